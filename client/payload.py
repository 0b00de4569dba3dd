"""Texts in, Triton tensors out, and back: checks, chunking, request tensors, result parsing.

Input policy (decided here, documented in client/README.md):
- an empty list is refused before any request is sent;
- `str` items are checked locally: empty or whitespace-only text, or text that cannot be
  encoded as UTF-8 (lone surrogates), raise InputRejected naming the item, no request;
- `bytes` items are sent as they are: the server's tokenizer is the judge (it refuses
  invalid UTF-8 and empty text, and the client quotes its message);
- long texts are not cut here: the server truncates at the model's max_length tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Sequence

import numpy as np

from .errors import InputRejected
from .model_info import EMBEDDING, LABEL, PROBABILITIES, SCORE, TEXT_INPUT, ModelInfo

Text = str | bytes


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float                                            # the model's top-1 probability (float32)
    # Best first; scores as Triton prints them (6 decimals).
    top_k: list[tuple[str, float]] = field(default_factory=list)


def encode_texts(texts: Sequence[Text]) -> np.ndarray:
    """The texts as a [n, 1] object array of UTF-8 bytes, Triton's BYTES layout."""
    if isinstance(texts, (str, bytes)):
        raise InputRejected("pass a list of texts, not a single string (wrap it: [text])")
    if len(texts) == 0:
        raise InputRejected("no texts to send: the list is empty")
    return np.array([_encode_one(index, text) for index, text in enumerate(texts)], dtype=object).reshape(-1, 1)


def _encode_one(index: int, text: Text) -> bytes:
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise InputRejected(f"texts[{index}] is a {type(text).__name__}; send str (or UTF-8 bytes)")
    if not text.strip():
        raise InputRejected(f"texts[{index}] is empty or whitespace only; send at least one word")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputRejected(f"texts[{index}] cannot be encoded as UTF-8 (character {error.start}: "
                            f"{text[error.start]!r}); remove lone surrogates") from None


def split_batches(batch: np.ndarray, size: int) -> list[np.ndarray]:
    """Chunks of at most `size` rows: the model's max_batch_size."""
    return [batch[start:start + size] for start in range(0, len(batch), size)]


def check_top_k(top_k: int, info: ModelInfo) -> None:
    if not isinstance(top_k, int) or not 1 <= top_k <= info.num_labels:
        raise InputRejected(f"top_k={top_k!r}: {info.name} has {info.num_labels} labels, "
                            f"ask for 1 to {info.num_labels}")


def text_input(protocol: ModuleType, batch: np.ndarray):
    tensor = protocol.InferInput(TEXT_INPUT, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    return tensor


def classification_outputs(protocol: ModuleType, top_k: int) -> list:
    """LABEL and SCORE, plus the top k of PROBABILITIES through Triton's classification
    extension: the server sorts and names them ("score:index:label" strings)."""
    return [protocol.InferRequestedOutput(LABEL), protocol.InferRequestedOutput(SCORE),
            protocol.InferRequestedOutput(PROBABILITIES, class_count=top_k)]


def parse_predictions(result) -> list[Prediction]:
    labels = result.as_numpy(LABEL).reshape(-1)
    scores = result.as_numpy(SCORE).reshape(-1)
    ranked = result.as_numpy(PROBABILITIES)
    return [Prediction(_text(label), float(score), [_parse_class(entry) for entry in row])
            for label, score, row in zip(labels, scores, ranked)]


def _parse_class(entry: bytes | str) -> tuple[str, float]:
    """Triton's classification entry "0.872324:87:car_rental" -> ("car_rental", 0.872324)."""
    score, _index, label = _text(entry).split(":", 2)
    return label, float(score)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def probability_outputs(protocol: ModuleType) -> list:
    return [protocol.InferRequestedOutput(PROBABILITIES)]


def parse_probabilities(result) -> np.ndarray:
    return result.as_numpy(PROBABILITIES)


def embedding_outputs(protocol: ModuleType) -> list:
    return [protocol.InferRequestedOutput(EMBEDDING)]


def parse_embeddings(result) -> np.ndarray:
    return result.as_numpy(EMBEDDING)
