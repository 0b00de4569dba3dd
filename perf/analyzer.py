"""Run perf_analyzer for one configuration and read back its CSV report.

perf_analyzer writes one CSV row per concurrency level (`-f`, with `--verbose-csv` for the
average latency). Times in that file are microseconds; we convert them to milliseconds
and give them the names every runtime in the results shares (p50_ms, throughput, ...).
"""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .install import perf_analyzer_command
from .sweeps import MeasurementSettings

# perf_analyzer CSV column -> our result field (all latencies arrive in microseconds).
LATENCY_COLUMNS = {
    "p50 latency": "p50_ms",
    "p90 latency": "p90_ms",
    "p95 latency": "p95_ms",
    "p99 latency": "p99_ms",
    "Avg latency": "avg_ms",
}
BREAKDOWN_COLUMNS = {
    "Client Send": "client_send_ms",
    "Network+Server Send/Recv": "network_server_ms",
    "Server Queue": "server_queue_ms",
    "Server Compute Input": "server_compute_input_ms",
    "Server Compute Infer": "server_compute_infer_ms",
    "Server Compute Output": "server_compute_output_ms",
    "Client Recv": "client_recv_ms",
}
# Room for outputs in system/CUDA shared memory: 32 x 384 FP32 embeddings fit many times.
OUTPUT_SHARED_MEMORY_BYTES = 1 << 20


@dataclass(frozen=True)
class AnalyzerRun:
    """What perf_analyzer reported for one call: parsed rows, its exit status and output."""

    rows: list[dict[str, float]]
    returncode: int
    output_tail: str
    command: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.rows)


def build_command(
    argv0: str,
    *,
    model: str,
    url: str,
    protocol: str,
    input_data: Path,
    batch_size: int,
    concurrency: int,
    settings: MeasurementSettings,
    csv_path: Path,
    shared_memory: str = "none",
) -> list[str]:
    """The perf_analyzer command line for one model, protocol, batch size and concurrency."""
    command = [
        argv0, "-m", model, "-u", url, "-i", protocol,
        "--input-data", str(input_data),
        "-b", str(batch_size),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(settings.interval_ms),
        "--stability-percentage", str(settings.stability_percentage),
        "--max-trials", str(settings.max_trials),
        "-f", str(csv_path), "--verbose-csv",
    ]
    if settings.percentile is not None:
        command += ["--percentile", str(settings.percentile)]
    if shared_memory != "none":
        command += ["--shared-memory", shared_memory,
                    "--output-shared-memory-size", str(OUTPUT_SHARED_MEMORY_BYTES)]
    return command


def run_perf_analyzer(command_args: list[str], csv_path: Path, log_path: Path, timeout_s: float) -> AnalyzerRun:
    """Run a command from build_command (argv0 included), keep its output in log_path."""
    _, env = perf_analyzer_command()
    csv_path.unlink(missing_ok=True)  # a stale file must never pass for this run's result
    try:
        completed = subprocess.run(command_args, capture_output=True, text=True, env=env, timeout=timeout_s)
        output, returncode = completed.stdout + completed.stderr, completed.returncode
    except subprocess.TimeoutExpired as expired:
        output = _text(expired.stdout) + _text(expired.stderr) + f"\n[perf] killed after {timeout_s:.0f} s"
        returncode = 124
    log_path.write_text(" ".join(command_args) + "\n\n" + output)
    rows = parse_csv(csv_path) if csv_path.is_file() else []
    return AnalyzerRun(rows, returncode, output[-2000:], command_args)


def timeout_for(settings: MeasurementSettings) -> float:
    """Generous wall-clock limit: every trial's window twice over, plus start-up."""
    return 60 + 2 * (settings.max_trials + 3) * settings.interval_ms / 1000


def parse_csv(csv_path: Path) -> list[dict[str, float]]:
    """One dict per concurrency row: concurrency, throughput, latencies and breakdown in ms."""
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"Concurrency", "Inferences/Second", "p50 latency", "p99 latency"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path} is not a perf_analyzer latency report: missing columns {sorted(missing)}")
        return [_row(raw) for raw in reader]


def _row(raw: dict[str, str]) -> dict[str, float]:
    row: dict[str, float] = {
        "concurrency": int(raw["Concurrency"]),
        "throughput": float(raw["Inferences/Second"]),
    }
    for column, field in {**LATENCY_COLUMNS, **BREAKDOWN_COLUMNS}.items():
        if raw.get(column) not in (None, ""):
            row[field] = float(raw[column]) / 1000.0
    return row


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
