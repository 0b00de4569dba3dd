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

ROUNDS = 3    # turns of every variant; the p50 reported is the median of the rounds' medians
RUNS = 40     # timed runs per round
WARMUP = 5


def _feed_of_length(tokenizer, text: str, length: int, with_types: bool) -> dict[str, np.ndarray]:
    """A real passage cut to exactly `length` tokens (special tokens included)."""
    feed = encode(tokenizer, [text], with_types)
    if feed["input_ids"].shape[1] < length:
        raise ValueError(f"passage has fewer than {length} tokens")
    sep = feed["input_ids"][:, -1:]
    return {name: np.concatenate([value[:, : length - 1], sep if name == "input_ids" else value[:, -1:]], axis=1)
            for name, value in feed.items()}


def _median_ms(session, feed: dict[str, np.ndarray], output: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run([output], feed)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def latencies_by_length(paths: dict[str, Path], tokenizer, passage: str, output: str, with_types: bool,
                        lengths: tuple[int, ...] = (16, 128), rounds: int = ROUNDS,
                        runs: int = RUNS) -> dict[str, dict[str, float]]:
    """Each variant's p50 at each length: the median of `rounds` medians, the variants taking
    turns within each round, so that a slower spell of a shared machine falls on all of them
    rather than on whichever ran then (their ratios are what the build reports)."""
    sessions = {name: make_session(path, intra_op_threads=os.cpu_count() or 1) for name, path in paths.items()}
    feeds = {n: _feed_of_length(tokenizer, passage, n, with_types) for n in lengths}
    for session in sessions.values():
        for feed in feeds.values():
            for _ in range(WARMUP):
                session.run([output], feed)
    medians = {name: {n: [] for n in lengths} for name in paths}
    for _ in range(rounds):
        for n, feed in feeds.items():
            for name, session in sessions.items():
                medians[name][n].append(_median_ms(session, feed, output, runs))
    return {name: {f"p50_ms_{n}_tokens": statistics.median(by_length[n]) for n in lengths}
            for name, by_length in medians.items()}
