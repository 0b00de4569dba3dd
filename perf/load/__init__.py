"""python -m perf load: the ensemble under sustained load — failed requests, latency, server memory.

Phases, each one perf_analyzer run at `concurrency` (16) against the ensemble (perf.load.phases):
  fixed    16-token texts, batch 1, for `duration_s` (60 s; 600 s with --soak)
  mixed    texts of every length from one word to the model's maximum (128 tokens), batch 1
  batch-N  16-token texts sent N at a time (-b N), for a few N up to the model's max_batch_size

Meanwhile perf.memory samples the resident memory of tritonserver and its Python-backend
stubs every second; after warm-up it must not grow by more than 10%, within each phase and
over all of them. Before the phases, a couple of requests of the largest input the model
takes warm its allocators up (see _warm_up).

Results (perf.load.report): <out>/load.json (everything), <out>/summary.md, <out>/memory.csv
(every sample) and <out>/raw/ (perf_analyzer logs, CSVs and per-request exports), plus a
table on the console.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .. import inputs, memory
from ..errors import PerfError
from ..install import perf_analyzer_version
from ..machine import describe_machine
from ..models import ModelFiles, resolve_model
from ..triton import TritonClient, TritonServer, triton_server
from . import report
from .phases import Limits, Phase, PhaseResult, limits, plan, run_phase

SOAK_DURATION_S = 600.0
MAX_MEMORY_GROWTH = 0.10
WARMUP_REQUESTS = 2  # of the largest input; ONNX Runtime's arena reaches its size on the first
WARMUP_SEED = 7
console = report.console


@dataclass(frozen=True)
class LoadOptions:
    model_repository: Path
    out_dir: Path
    model: str = "minilm-intent"
    duration_s: float = 60.0  # the fixed-length phase (the spec's "at least 60 s at concurrency 16")
    phase_duration_s: float = 60.0  # the mixed-length phase and each batch size
    concurrency: int = 16
    batch_sizes: tuple[int, ...] | None = None  # None: 2, 8 and the model's max_batch_size
    grpc_url: str | None = None  # a running server; neither URL given = start a local one
    http_url: str | None = None
    server_pid: int | None = None  # for memory sampling of a running server; found by its port if not given
    max_memory_growth: float = MAX_MEMORY_GROWTH
    memory_interval_s: float = 1.0


def load(options: LoadOptions) -> dict[str, Any]:
    """Run every phase; write load.json, summary.md and memory.csv; print the table; return load.json's content."""
    model = resolve_model(options.model_repository, options.model)
    tokenizer = inputs.load_tokenizer(model.tokenizer_json)
    out_dir = Path(options.out_dir)
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    with triton_server(options.model_repository, grpc_url=options.grpc_url, http_url=options.http_url,
                       server_pid=options.server_pid, log_file=out_dir / "raw" / "tritonserver.log") as server:
        if server.started_here:
            console.log(f"started tritonserver on {options.model_repository}")
        with TritonClient(server) as client:
            ensemble_config = client.model_config(model.names.ensemble)
        model_limits = limits(ensemble_config)
        phases = plan((options.duration_s, options.phase_duration_s), options.batch_sizes, tokenizer, model_limits,
                      out_dir / "inputs")
        document = _new_document(options, model, server, model_limits, phases)
        results: list[PhaseResult] = []
        sampler = _memory_sampler(server, options.memory_interval_s, document)
        with sampler or contextlib.nullcontext():
            document["warmup"] = _warm_up(server, ensemble_config, tokenizer, model_limits)
            for phase in phases:
                console.log(f"phase {phase.name}: {phase.tokens} tokens, batch {phase.batch_size}, "
                            f"concurrency {options.concurrency}, {phase.duration_s:.0f} s")
                result = run_phase(phase, options.concurrency, server, ensemble_config, sampler, out_dir)
                report.judge_phase(result, sampler, options.max_memory_growth)
                report.log_phase(result)
                results.append(result)
                # After every phase: an interrupted soak keeps its data.
                report.write(out_dir, document, results, sampler)
        _finish(document, results, sampler, options)
    report.write(out_dir, document, results, sampler)
    report.print_table(document, results)
    report.print_verdict(document, out_dir)
    return report.as_json(document, results)


def _memory_sampler(server: TritonServer, interval_s: float, document: dict) -> memory.MemorySampler | None:
    if server.pid is None:
        document["memory_note"] = ("no memory figures: the server is not a process on this machine "
                                   "(pass --server-pid if it is)")
        console.log(f"[yellow]{document['memory_note']}")
        return None
    return memory.MemorySampler(server.pid, interval_s)


def _warm_up(server: TritonServer, config: dict, tokenizer: Tokenizer, model_limits: Limits) -> dict[str, Any]:
    """Send the largest input the ensemble takes (max_batch_size texts of max_length tokens) a few times.

    ONNX Runtime's memory arena grows to the largest tensors it has been given and then stays
    there. Without this, the first seconds of the mixed-length phase grow the encoder's stub
    by ~50 MiB (+12% on this machine) and read as a leak; after it they add a few MiB.
    """
    texts = inputs.exact_length_texts(tokenizer, model_limits.max_length, model_limits.max_batch_size,
                                      seed=WARMUP_SEED)
    started = time.monotonic()
    with TritonClient(server) as client:
        for _ in range(WARMUP_REQUESTS):
            try:
                client.infer_texts(config["name"], config["input"][0]["name"], texts)
            except Exception as error:  # tritonclient raises its own exception types per protocol
                raise PerfError(f"the warm-up request ({len(texts)} texts of {model_limits.max_length} tokens) "
                                f"to {config['name']} failed: {error}") from None
    console.log(f"warm-up: {WARMUP_REQUESTS} requests of {len(texts)} texts x {model_limits.max_length} tokens "
                f"in {time.monotonic() - started:.1f} s")
    return {"requests": WARMUP_REQUESTS, "texts_per_request": len(texts), "tokens": model_limits.max_length,
            "seconds": round(time.monotonic() - started, 2)}


def _new_document(options: LoadOptions, model: ModelFiles, server: TritonServer, model_limits: Limits,
                  phases: list[Phase]) -> dict[str, Any]:
    return {
        "started": _now(),
        "model": model.name,
        "ensemble": model.names.ensemble,
        "model_repository": str(options.model_repository),
        **asdict(model_limits),
        "concurrency": options.concurrency,
        "max_memory_growth": options.max_memory_growth,
        "server": {"grpc_url": server.grpc_url, "http_url": server.http_url, "pid": server.pid,
                   "protocol": server.protocol, "started_here": server.started_here, "log_file": server.log_file},
        "plan": [phase.as_dict() for phase in phases],
        "machine": {**describe_machine(), "perf_analyzer": perf_analyzer_version()},
    }


def _finish(document: dict[str, Any], results: list[PhaseResult], sampler: memory.MemorySampler | None,
            options: LoadOptions) -> None:
    document["finished"] = _now()
    document["problems"] = [f"{result.phase.name}: {problem}" for result in results for problem in result.problems]
    if sampler is not None and results:
        # All phases together, its warm-up the first 10% of them (at least 5 s).
        start_s, end_s = results[0].memory_clock_s[0], results[-1].memory_clock_s[1]
        document["memory_whole_run"] = report.memory_report(sampler, start_s, end_s)
        document["problems"] += [f"whole run: {problem}" for problem in
                                 report.memory_problems(document["memory_whole_run"], options.max_memory_growth)]
    document["passed"] = not document["problems"] and len(results) == len(document["plan"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
