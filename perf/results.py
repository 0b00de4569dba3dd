"""The results folder's files: results.json (everything) and results.csv (one row per run).

results.json = {"preset", "model", "machine": {...}, "servers": [...], "measurement": {...},
"runs": [{runtime, protocol, seq_len, batch_size, concurrency, shared_memory,
dynamic_batching, status, throughput, p50_ms, p90_ms, p95_ms, p99_ms, avg_ms, ...}]}.
Latencies are ms per request; throughput is texts (inferences) per second.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

CSV_FIELDS = ["runtime", "protocol", "seq_len", "batch_size", "concurrency", "shared_memory",
              "dynamic_batching", "status", "throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
              "avg_ms", "requests", "server_queue_ms", "server_compute_infer_ms", "model", "tool", "error"]


def write_results(out_dir: Path, document: dict[str, Any]) -> None:
    (out_dir / "results.json").write_text(json.dumps(document, indent=2, default=str))
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for run in document["runs"]:
            writer.writerow({field: _csv_value(run.get(field)) for field in CSV_FIELDS})


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's results from several rounds of the sweep, as one result: each figure (the
    latencies, their breakdown and throughput) is the median over the rounds that succeeded,
    requests are summed, and every round's p50 is kept in rounds_p50_ms to show the spread.
    A single round is returned as it is."""
    if len(results) == 1:
        return dict(results[0])
    succeeded = [result for result in results if result.get("status") == "ok"]
    if not succeeded:
        return {**results[-1], "rounds_p50_ms": [None] * len(results)}
    merged = dict(succeeded[0])
    for field, value in succeeded[0].items():
        if field == "throughput" or (field.endswith("_ms") and isinstance(value, (int, float))):
            merged[field] = statistics.median(result[field] for result in succeeded if field in result)
    if all("requests" in result for result in succeeded):
        merged["requests"] = sum(result["requests"] for result in succeeded)
    merged["rounds_p50_ms"] = [result.get("p50_ms") if result.get("status") == "ok" else None for result in results]
    return merged


def load_results(results_dir: Path) -> dict[str, Any]:
    path = Path(results_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m perf run` first, or give its output folder")
    return json.loads(path.read_text())


def failure(tool: str, error: BaseException, status: str = "failed", model: str = "") -> dict[str, Any]:
    """The result of a run that produced no figures, with the reason."""
    return {"status": status, "tool": tool, "model": model, "error": str(error)[-1500:]}


def _csv_value(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
