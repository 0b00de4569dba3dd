"""Turns of back-to-back requests per variant, timed, with CPU time and Triton's statistics.

Wall time is what counts (texts/s with requests back to back, one client unless a variant
has more). CPU seconds of this process and of the server (with its Python-backend stubs)
and Triton's per-model statistics (queue, compute input / infer / output) say where the
time went; they are read around each turn, outside the timed requests.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..baselines import batches_of
from .variants import Call, Variant

STAT_FIELDS = ("queue", "compute_input", "compute_infer", "compute_output")
MIN_TURNS = 6


@dataclass
class GapRun:
    model_name: str
    lengths: list[int]
    seconds: float              # timed per variant and length
    block: int                  # requests back to back per client in a turn; the first is not timed
    batch: int = 32             # texts per request
    samples: list[dict] = field(default_factory=list)   # one per turn and variant


def read_stats(grpc_url: str, models: list[str]) -> dict[str, dict[str, int]]:
    """Triton's cumulative counts and nanoseconds per model (the statistics extension)."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(grpc_url)
    stats = {}
    try:
        for model in models:
            entry = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
            inference = entry.get("inference_stats", {})
            stats[model] = {"requests": int(inference.get("success", {}).get("count", 0)),
                            "executions": int(entry.get("execution_count", 0)),
                            "request_ns": int(inference.get("success", {}).get("ns", 0))}
            stats[model].update({f"{name}_ns": int(inference.get(name, {}).get("ns", 0)) for name in STAT_FIELDS})
    finally:
        client.close()
    return stats


def stats_delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    return {model: {key: after[model][key] - before[model][key] for key in after[model]} for model in after}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its children (the server and its stubs)."""
    import psutil

    if pid is None:
        return 0.0
    total = 0.0
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for each in family:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _back_to_back(call: Call, batches: list[list[str]]) -> None:
    for batch in batches:
        call(batch)


def _all_clients(variant: Variant, work: Callable[[Call], None], pool: ThreadPoolExecutor | None) -> None:
    """`work` for every client of the variant: in this thread for one client (tritonclient's HTTP
    client is gevent-based and must stay on the thread that made it), else one thread each."""
    if pool is None:
        work(variant.calls[0])
    else:
        list(pool.map(work, variant.calls))


def timed_turn(variant: Variant, batches: list[list[str]], grpc_url: str, server_pid: int | None) -> dict[str, Any]:
    """One untimed request per client (it absorbs what the previous variant left behind, such
    as ONNX Runtime threads still spinning), then the rest back to back, every client at once."""
    pool = ThreadPoolExecutor(variant.concurrency) if variant.concurrency > 1 else None
    try:
        _all_clients(variant, lambda call: call(batches[0]), pool)
        stats_before = read_stats(grpc_url, variant.models) if variant.models else {}
        server_before, cpu_before = cpu_seconds(server_pid), time.process_time()
        started = time.perf_counter()
        _all_clients(variant, lambda call: _back_to_back(call, batches[1:]), pool)
        wall = time.perf_counter() - started
    finally:
        if pool is not None:
            pool.shutdown()
    requests = (len(batches) - 1) * variant.concurrency
    sample = {"requests": requests, "wall_s": wall,
              "client_cpu_s": time.process_time() - cpu_before, "server_cpu_s": cpu_seconds(server_pid) - server_before}
    if variant.models:
        sample["stats"] = stats_delta(stats_before, read_stats(grpc_url, variant.models))
    return sample


def run_interleaved(run: GapRun, variants: list[Variant], texts: dict[int, list[str]], grpc_url: str,
                    server_pid: int | None) -> None:
    """Turns of every variant in order (reversed every other turn), until each has been timed
    for `seconds`: every variant sees the same spells of a busy machine."""
    for length in run.lengths:
        batches = batches_of(texts[length], run.batch)
        timed = {variant.name: 0.0 for variant in variants}
        turn = 0
        while turn < MIN_TURNS or min(timed.values()) < run.seconds:
            order = variants if turn % 2 == 0 else variants[::-1]
            for variant in order:
                start = turn * run.block
                chosen = [batches[(start + i) % len(batches)] for i in range(run.block)]
                sample = timed_turn(variant, chosen, grpc_url, server_pid)
                timed[variant.name] += sample["wall_s"]
                run.samples.append({"variant": variant.name, "tokens": length, "turn": turn, **sample})
            turn += 1
            _print_turn(run, length, turn)


def _print_turn(run: GapRun, length: int, turn: int) -> None:
    last = [s for s in run.samples if s["tokens"] == length and s["turn"] == turn - 1]
    print(f"{length:>4} tokens, turn {turn:>3}: " + ", ".join(
        f"{s['variant']} {run.batch * s['requests'] / s['wall_s']:.0f}" for s in last) + " texts/s", flush=True)
