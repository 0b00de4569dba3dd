"""How the command line shows answers: a rich table for people, JSON lines for programs."""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
from rich.table import Table

from .model_info import ModelInfo
from .payload import Prediction

TEXT_WIDTH = 60        # characters of each text shown in a table
EMBEDDING_HEAD = 4     # leading dimensions of an embedding shown in a table


def shorten(text: str, width: int = TEXT_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def predictions_table(texts: Sequence[str], predictions: Sequence[Prediction], info: ModelInfo,
                      caption: str) -> Table:
    table = Table(title=info.describe(), title_justify="left", caption=caption, caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("text")
    table.add_column("label", style="bold")
    table.add_column("score", justify="right")
    show_top_k = any(len(p.top_k) > 1 for p in predictions)
    if show_top_k:
        table.add_column("runners-up")
    for index, (text, prediction) in enumerate(zip(texts, predictions)):
        row = [str(index), shorten(text), prediction.label, f"{prediction.score:.3f}"]
        if show_top_k:
            row.append(", ".join(f"{label} {score:.3f}" for label, score in prediction.top_k[1:]))
        table.add_row(*row)
    return table


def embeddings_table(texts: Sequence[str], embeddings: np.ndarray, info: ModelInfo, caption: str) -> Table:
    table = Table(title=info.describe(), title_justify="left", caption=caption, caption_justify="left")
    for column, justify in (("#", "right"), ("text", "left"), ("dim", "right"), ("norm", "right"),
                            (f"first {EMBEDDING_HEAD} dims", "left")):
        table.add_column(column, justify=justify)
    for index, (text, vector) in enumerate(zip(texts, embeddings)):
        head = " ".join(f"{value:+.3f}" for value in vector[:EMBEDDING_HEAD])
        table.add_row(str(index), shorten(text), str(vector.shape[0]), f"{np.linalg.norm(vector):.4f}", head)
    return table


def prediction_lines(texts: Sequence[str], predictions: Sequence[Prediction]) -> list[str]:
    return [json.dumps({"text": text, "label": p.label, "score": round(p.score, 6),
                        "top_k": [{"label": label, "score": score} for label, score in p.top_k]},
                       ensure_ascii=False)
            for text, p in zip(texts, predictions)]


def embedding_lines(texts: Sequence[str], embeddings: np.ndarray) -> list[str]:
    return [json.dumps({"text": text, "norm": round(float(np.linalg.norm(vector)), 6),
                        "embedding": [round(float(value), 7) for value in vector]}, ensure_ascii=False)
            for text, vector in zip(texts, embeddings)]
