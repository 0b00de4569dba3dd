"""The phases of `python -m perf load`: what each one sends, and one perf_analyzer run per phase.

A phase lasts its duration because perf_analyzer measures exactly three time windows of a
third of it each (plus a second or two to start and drain), with its stability check made
impossible to miss: a load test wants a fixed length of load, not "until stable". Every
request of those windows is counted, and so is every request Triton saw (its statistics
API, before and after), so a request that failed on either side is visible.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .. import analyzer, inputs, memory
from ..errors import PerfError
from ..install import perf_analyzer_command
from ..sweeps import MeasurementSettings
from ..triton import TritonServer, server_counts

FIXED_TOKENS = 16
# Prime: perf_analyzer sends every one of a prime number of steps (see perf.inputs).
FIXED_TEXT_COUNT = 127
WINDOWS = 3  # perf_analyzer's stability check looks at the last 3 windows: 3 windows is one check
WINDOW_STRETCH = 1.2  # time_windows mode measures 1.2 x --measurement-interval (seen in its exports)
NO_STABILITY_CHECK = 1_000_000  # percent: any three windows count as "stable"
# One thread keeping `concurrency` asynchronous requests in flight walks the input steps in
# order, so the requests in flight carry different texts and a dynamic batch mixes lengths.
# perf_analyzer's default (one synchronous thread per request in flight) sends the same
# step from every thread at about the same moment (see perf.inputs): batches of one length.
ONE_ASYNC_THREAD = ("--async", "--max-threads", "1")


@dataclass(frozen=True)
class Phase:
    name: str
    tokens: str  # "16" or "3-128" (special tokens included)
    input_data: Path
    batch_size: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "input_data": str(self.input_data)}


@dataclass(frozen=True)
class Limits:
    """What the ensemble takes, from its config: the batch phase's sizes and the longest input."""
    max_batch_size: int
    max_length: int


@dataclass
class PhaseResult:
    """One phase: what perf_analyzer saw, what Triton counted, memory over its span, its problems."""

    phase: Phase
    ensemble: str
    concurrency: int
    wall_s: float
    memory_clock_s: list[float]  # [start, end] on the memory sampler's clock
    perf_analyzer_exit: int
    command: str
    status: str  # "ok" or "error" (perf_analyzer failed or gave no figures)
    latency: dict[str, float]  # perf_analyzer's figures: throughput, p50_ms, ..., the breakdown
    requests: int  # requests that ended inside perf_analyzer's windows
    measured_s: float  # from its first to its last window boundary
    unanswered: int
    client_errors: int  # perf_analyzer threads that stopped at a failed request
    error: str | None
    server: dict[str, dict[str, int]]  # Triton's count deltas per model (ensemble and its parts)
    memory: dict[str, Any] | None = None  # label -> Growth.as_dict(), or {"error": why not judged}
    problems: list[str] = field(default_factory=list)

    @property
    def server_success(self) -> int:
        return self.server[self.ensemble]["success"]

    @property
    def failures(self) -> int:
        return max(self.server[self.ensemble]["fail"], self.client_errors)

    @property
    def failed_models(self) -> dict[str, int]:
        return {name: delta["fail"] for name, delta in self.server.items() if delta["fail"]}

    @property
    def texts_per_request(self) -> float | None:
        """Texts per request as Triton counted them: the batch size perf_analyzer really sent."""
        counts = self.server[self.ensemble]
        return round(counts["inferences"] / counts["success"], 3) if counts["success"] else None

    @property
    def texts_per_execution(self) -> dict[str, float]:
        """What dynamic batching made of the requests, per composing model."""
        return {name: round(delta["inferences"] / delta["executions"], 2)
                for name, delta in self.server.items() if name != self.ensemble and delta["executions"]}

    def as_dict(self) -> dict[str, Any]:
        """The phase as load.json holds it."""
        data = {**self.phase.as_dict(), "concurrency": self.concurrency, "wall_s": self.wall_s,
                "memory_clock_s": self.memory_clock_s, "perf_analyzer_exit": self.perf_analyzer_exit,
                "command": self.command, "status": self.status, **self.latency, "requests": self.requests,
                "measured_s": self.measured_s, "unanswered": self.unanswered, "client_errors": self.client_errors}
        if self.error is not None:
            data["error"] = self.error
        data |= {"server": self.server, "server_success": self.server_success}
        if self.texts_per_request is not None:
            data["texts_per_request"] = self.texts_per_request
        data |= {"texts_per_execution": self.texts_per_execution, "failures": self.failures,
                 "failed_models": self.failed_models}
        if self.memory is not None:
            data["memory"] = self.memory
        return data | {"problems": self.problems}


def limits(config: dict) -> Limits:
    """max_batch_size and the longest input (max_length parameter) from the ensemble's config."""
    max_batch_size = int(config.get("max_batch_size", 0))
    max_length = config.get("parameters", {}).get("max_length", {}).get("string_value")
    if max_batch_size < 1:
        raise PerfError(f"model {config.get('name')} does not batch (max_batch_size {max_batch_size}); "
                        "the batch phase needs a batching model")
    if not max_length:
        raise PerfError(f"model {config.get('name')} has no max_length parameter in its config; "
                        "rebuild the repository with python -m convert")
    return Limits(max_batch_size, int(max_length))


def composing_models(config: dict) -> list[str]:
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def plan(durations: tuple[float, float], requested_sizes: tuple[int, ...] | None, tokenizer: Tokenizer,
         model_limits: Limits, inputs_dir: Path) -> list[Phase]:
    """fixed (16 tokens, `durations[0]`), mixed (every length), then batch-N, each `durations[1]`."""
    fixed_s, phase_s = durations
    fixed = inputs.write_input_files(tokenizer, FIXED_TOKENS, FIXED_TEXT_COUNT, inputs_dir)["ensemble"]
    mixed = inputs.write_mixed_input_files(tokenizer, model_limits.max_length, inputs_dir)["ensemble"]
    shortest = inputs.special_token_count(tokenizer) + 1
    phases = [
        Phase("fixed", str(FIXED_TOKENS), fixed, 1, fixed_s),
        Phase("mixed", f"{shortest}-{model_limits.max_length}", mixed, 1, phase_s),
    ]
    for batch_size in batch_sizes(requested_sizes, model_limits.max_batch_size):
        phases.append(Phase(f"batch-{batch_size}", str(FIXED_TOKENS), fixed, batch_size, phase_s))
    return phases


def batch_sizes(requested: tuple[int, ...] | None, max_batch_size: int) -> list[int]:
    """The batch phase's sizes: the requested ones (checked), else 2, 8 and max_batch_size."""
    if requested is None:
        return sorted({size for size in (2, 8, max_batch_size) if size <= max_batch_size})
    too_large = [size for size in requested if not 1 <= size <= max_batch_size]
    if too_large:
        raise PerfError(f"batch sizes {too_large} are outside 1..{max_batch_size} (the model's max_batch_size)")
    return sorted(set(requested))


def run_phase(phase: Phase, concurrency: int, server: TritonServer, ensemble_config: dict,
              sampler: memory.MemorySampler | None, out_dir: Path) -> PhaseResult:
    """One perf_analyzer run, with Triton's counts before and after. The memory report and the
    problems are the caller's to add (perf.load.report)."""
    ensemble = ensemble_config["name"]
    models = [ensemble, *composing_models(ensemble_config)]
    raw = out_dir / "raw" / phase.name
    raw.parent.mkdir(parents=True, exist_ok=True)
    command, settings = _command(phase, concurrency, ensemble, server, raw)
    raw.with_suffix(".requests.json").unlink(missing_ok=True)  # a stale export must not pass for this run's
    before = server_counts(server, models)
    started_s = sampler.now_s() if sampler else 0.0
    wall_started = time.monotonic()
    outcome = analyzer.run_perf_analyzer(command, raw.with_suffix(".csv"), raw.with_suffix(".log"),
                                         analyzer.timeout_for(settings))
    wall_s = time.monotonic() - wall_started
    ended_s = sampler.now_s() if sampler else 0.0
    after = server_counts(server, models)
    deltas = {model: {key: after[model][key] - before[model][key] for key in after[model]} for model in after}
    return PhaseResult(phase, ensemble, concurrency, round(wall_s, 1), [round(started_s, 2), round(ended_s, 2)],
                       outcome.returncode, " ".join(command), server=deltas,
                       **_client_figures(outcome, raw.with_suffix(".requests.json")))


def _command(phase: Phase, concurrency: int, ensemble: str, server: TritonServer,
             raw: Path) -> tuple[list[str], MeasurementSettings]:
    """perf_analyzer for a fixed length of load: three windows, no stability check, one async thread."""
    interval_ms = math.ceil(phase.duration_s * 1000 / WINDOWS / WINDOW_STRETCH)
    settings = MeasurementSettings(interval_ms=max(1000, interval_ms), stability_percentage=NO_STABILITY_CHECK,
                                   max_trials=WINDOWS)
    command = analyzer.build_command(
        perf_analyzer_command()[0], model=ensemble, url=server.url, protocol=server.protocol,
        input_data=phase.input_data, batch_size=phase.batch_size, concurrency=concurrency,
        settings=settings, csv_path=raw.with_suffix(".csv"),
    )
    command += ["--measurement-mode", "time_windows", "--profile-export-file", str(raw.with_suffix(".requests.json")),
                *ONE_ASYNC_THREAD]
    return command, settings


def _client_figures(outcome: analyzer.AnalyzerRun, export_path: Path) -> dict[str, Any]:
    """What perf_analyzer saw: requests in its windows, latencies (CSV), errors its threads hit."""
    latency = {key: round(value, 3) for key, value in outcome.rows[0].items() if key != "concurrency"} \
        if outcome.rows else {}
    experiment = json.loads(export_path.read_text())["experiments"][0] if export_path.is_file() else {}
    requests, windows = experiment.get("requests", []), experiment.get("window_boundaries", [])
    # perf_analyzer stops a thread at its first failed request: "Thread [3] had error: ...".
    error_lines = [line.strip() for line in outcome.output_tail.splitlines() if "had error" in line]
    error = None if outcome.ok else (" | ".join(error_lines[:3]) or outcome.output_tail.strip()[-600:])
    return {"status": "ok" if outcome.ok else "error", "latency": latency, "requests": len(requests),
            "measured_s": round((windows[-1] - windows[0]) / 1e9, 3) if len(windows) > 1 else 0.0,
            "unanswered": sum(1 for request in requests if not request.get("response_timestamps")),
            "client_errors": len(error_lines), "error": error}
