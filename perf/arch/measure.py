"""Interleaved timing: the runtimes of one cell take turns, one request each, until each has
its share of the window and at least `min_requests` requests.

On a shared machine the load moves from second to second; timing runtime A for a while and
then runtime B would charge A and B different loads. Taking turns gives every runtime the
same mix of quiet and busy moments, so the ratios between them hold even when the absolute
figures move.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Hashable

from ..baselines import latency_summary

Call = Callable[[list[str]], Any]


def measure_interleaved(calls: dict[Hashable, Call], batches: list[list[str]], seconds: float, warmup: int,
                        min_requests: int) -> dict[Hashable, dict[str, float]]:
    """key -> latency_summary of that call plus min_ms (its fastest request: on a shared machine, the
    one least disturbed by other work); throughput over the call's own time, not the others'."""
    for call in calls.values():
        for index in range(warmup):
            call(batches[index % len(batches)])
    latencies: dict[Hashable, list[float]] = {key: [] for key in calls}
    started = time.perf_counter()
    index = 0
    while index < min_requests or time.perf_counter() - started < seconds * len(calls):
        for key, call in calls.items():
            before = time.perf_counter()
            call(batches[index % len(batches)])
            latencies[key].append(time.perf_counter() - before)
        index += 1
    return {key: {**latency_summary(values, sum(values), len(batches[0])), "min_ms": min(values) * 1000}
            for key, values in latencies.items()}
