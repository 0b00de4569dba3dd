"""In-process latency of a variant at exactly 16 and 128 tokens, batch 1 (the summary table).

This is ONNX Runtime alone, no server: the floor that serving is measured against.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from .python_models.onnx_encoder_model import make_session
from .python_models.tokenizer_model import encode

RUNS = 60


def _feed_of_length(tokenizer, text: str, length: int, with_types: bool) -> dict[str, np.ndarray]:
    """A real passage cut to exactly `length` tokens (special tokens included)."""
    feed = encode(tokenizer, [text], with_types)
    if feed["input_ids"].shape[1] < length:
        raise ValueError(f"passage has fewer than {length} tokens")
    sep = feed["input_ids"][:, -1:]
    return {name: np.concatenate([value[:, : length - 1], sep if name == "input_ids" else value[:, -1:]], axis=1)
            for name, value in feed.items()}


def median_latency_ms(onnx_path: Path, feed: dict[str, np.ndarray], output: str, runs: int = RUNS) -> float:
    session = make_session(onnx_path, intra_op_threads=os.cpu_count() or 1)
    for _ in range(5):
        session.run([output], feed)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run([output], feed)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def latency_by_length(onnx_path: Path, tokenizer, passage: str, output: str, with_types: bool,
                      lengths: tuple[int, ...] = (16, 128)) -> dict[str, float]:
    return {f"p50_ms_{n}_tokens": median_latency_ms(onnx_path, _feed_of_length(tokenizer, passage, n, with_types),
                                                   output)
            for n in lengths}
