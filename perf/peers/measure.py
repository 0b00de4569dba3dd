"""The one load generator for every peer: N callers in threads, each calling in a loop.

Imported by the serving venv (perf.peers.measure) and, as a plain module, by the runner in
the peers venv, so it uses the standard library only. Each caller gets its own callable from
`make_call` (its own HTTP connection or gRPC client); an in-process peer shares one model.
Latency percentiles are nearest-rank, as perf_analyzer's and perf/baselines.py's are.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    batch_size: int
    concurrency: int


SCENARIOS = (
    Scenario("b1", "batch 1, 1 client (latency)", 1, 1),
    Scenario("c8", "batch 1, 8 clients (throughput)", 1, 8),
    Scenario("b32", "batch 32, 1 client (throughput)", 32, 1),
)
SCENARIO_BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


def batches_of(texts: Sequence[str], batch_size: int) -> list[list[str]]:
    """Consecutive groups of distinct texts, wrapping around, as perf_analyzer's -b does."""
    count = max(1, len(texts) // batch_size)
    return [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)] for i in range(count)]


def summary(latencies_s: Sequence[float], elapsed_s: float, batch_size: int) -> dict[str, float]:
    """Throughput in texts per second; p50/p99/avg in ms."""
    if not latencies_s:
        raise ValueError("no request completed during the measurement window; raise --seconds")
    ordered = sorted(latencies_s)
    return {"throughput": len(ordered) * batch_size / elapsed_s, "p50_ms": nearest_rank_ms(ordered, 50),
            "p99_ms": nearest_rank_ms(ordered, 99), "avg_ms": sum(ordered) / len(ordered) * 1000,
            "requests": len(ordered)}


def nearest_rank_ms(ordered_s: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile (perf_analyzer's) of latencies sorted ascending, s -> ms."""
    return ordered_s[max(0, math.ceil(percent / 100 * len(ordered_s)) - 1)] * 1000


def measure(make_call: Callable[[], Callable[[list[str]], Any]], batches: list[list[str]],
            concurrency: int, seconds: float, warmup_requests: int) -> dict[str, float]:
    """`concurrency` threads send the batches in turn for `seconds` after a warm-up; a failed
    call fails the measurement (raised here) rather than quietly lowering the figures."""
    warm = make_call()
    for index in range(warmup_requests):
        warm(batches[index % len(batches)])
    calls = [warm] + [make_call() for _ in range(concurrency - 1)]
    latencies, elapsed = timed_callers(calls, batches, seconds)
    return summary(latencies, elapsed, len(batches[0]))


def timed_callers(calls: Sequence[Callable[[Any], Any]], items: Sequence[Any],
                  seconds: float) -> tuple[list[float], float]:
    """One thread per call, all started together, each calling with the items in turn (thread k
    from item k on) until `seconds` have passed: every call's latency (s) and the elapsed time.
    A failed call stops its thread and is raised here once all have stopped."""
    concurrency = len(calls)
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)
    deadline: list[float] = []

    def caller(slot: int) -> None:
        start.wait()
        index = slot
        try:
            while time.perf_counter() < deadline[0]:
                before = time.perf_counter()
                calls[slot](items[index % len(items)])
                per_thread[slot].append(time.perf_counter() - before)
                index += concurrency
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(slot,), daemon=True) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline.append(started + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a call failed during the measurement: {errors[0]!r}")
    return [t for latencies in per_thread for t in latencies], elapsed


def measure_all(make_call: Callable[[], Callable[[list[str]], Any]], texts: dict[int, list[str]],
                seconds: float, warmup_requests: int, scenarios: Sequence[str],
                progress: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """Every scenario at every length: one row each, an error row where it failed."""
    rows = []
    for seq_len, length_texts in sorted(texts.items()):
        for key in scenarios:
            scenario = SCENARIO_BY_KEY[key]
            row: dict[str, Any] = {"seq_len": seq_len, "scenario": key}
            try:
                # The warm-up counts texts: 10 batches of 32 at 128 tokens would take longer than the figure.
                warmup = max(2, warmup_requests // scenario.batch_size)
                row.update(measure(make_call, batches_of(length_texts, scenario.batch_size),
                                   scenario.concurrency, seconds, warmup))
                row["status"] = "ok"
            except Exception as error:  # one failing scenario must not lose the others
                row.update(status="error", error=str(error)[:500])
            progress(_describe(row))
            rows.append(row)
    return rows


def _describe(row: dict[str, Any]) -> str:
    head = f"{row['seq_len']:>4} tokens {row['scenario']:<4}"
    if row["status"] != "ok":
        return f"{head} failed: {row['error'][:200]}"
    return f"{head} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  {row['throughput']:8.1f} texts/s"
