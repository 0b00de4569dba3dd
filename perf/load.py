"""python -m perf load: the ensemble under sustained load — failed requests, latency, server memory.

Phases, each one perf_analyzer run at `concurrency` (16) against the ensemble:
  fixed    16-token texts, batch 1, for `duration_s` (60 s; 600 s with --soak)
  mixed    texts of every length from one word to the model's maximum (128 tokens), batch 1
  batch-N  16-token texts sent N at a time (-b N), for a few N up to the model's max_batch_size

A phase lasts its duration because perf_analyzer measures exactly three time windows of a
third of it each (plus a second or two to start and drain), with its stability check made
impossible to miss: a load test wants a fixed length of load, not "until stable". Every
request of those windows is counted, and so is every request Triton saw (its statistics
API, before and after), so a request that failed on either side is visible. Meanwhile perf.memory samples the resident
memory of tritonserver and its Python-backend stubs every second; after warm-up it must not
grow by more than 10%, within each phase and over all of them. Before the phases, a couple
of requests of the largest input the model takes warm its allocators up (see _warm_up).

Results: <out>/load.json (everything), <out>/summary.md, <out>/memory.csv (every sample) and
<out>/raw/ (perf_analyzer logs, CSVs and per-request exports), plus a table on the console.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rich.console import Console
from rich.table import Table
from tokenizers import Tokenizer

from . import analyzer, inputs, memory
from .install import perf_analyzer_command, perf_analyzer_version
from .machine import describe_machine
from .stages import local_server_class
from .models import ModelFiles, resolve_model
from .sweeps import MeasurementSettings

SOAK_DURATION_S = 600.0
FIXED_TOKENS = 16
# Prime: perf_analyzer sends every one of a prime number of steps (see perf.inputs).
FIXED_TEXT_COUNT = 127
MAX_MEMORY_GROWTH = 0.10
WARMUP_REQUESTS = 2  # of the largest input; ONNX Runtime's arena reaches its size on the first
WARMUP_SEED = 7
WINDOWS = 3  # perf_analyzer's stability check looks at the last 3 windows: 3 windows is one check
WINDOW_STRETCH = 1.2  # time_windows mode measures 1.2 x --measurement-interval (seen in its exports)
NO_STABILITY_CHECK = 1_000_000  # percent: any three windows count as "stable"
# One thread keeping `concurrency` asynchronous requests in flight walks the input steps in
# order, so the requests in flight carry different texts and a dynamic batch mixes lengths.
# perf_analyzer's default (one synchronous thread per request in flight) sends the same
# step from every thread at about the same moment (see perf.inputs): batches of one length.
ONE_ASYNC_THREAD = ("--async", "--max-threads", "1")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1", "0.0.0.0"}

# A file or a pipe gets 80 columns from rich, too narrow for the results table.
console = Console(width=None if sys.stdout.isatty() else 160)


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


@dataclass(frozen=True)
class Phase:
    name: str
    tokens: str  # "16" or "3-128" (special tokens included)
    input_data: Path
    batch_size: int
    duration_s: float


@dataclass
class Server:
    """Where the load goes and which process to watch."""

    grpc_url: str | None
    http_url: str | None
    pid: int | None
    started_here: bool
    log_file: str | None = None
    ensemble_config: dict = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return "grpc" if self.grpc_url else "http"

    @property
    def url(self) -> str:
        return self.grpc_url or self.http_url  # type: ignore[return-value]


def load(options: LoadOptions) -> dict[str, Any]:
    """Run every phase; write load.json, summary.md and memory.csv; print the table; return the document."""
    model = resolve_model(options.model_repository, options.model)
    tokenizer = inputs.load_tokenizer(model.tokenizer_json)
    out_dir = Path(options.out_dir)
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    with _server(options, out_dir) as server:
        server.ensemble_config = model_config(server, model.ensemble)
        limits = _limits(server.ensemble_config)
        phases = _plan(options, tokenizer, limits, out_dir / "inputs")
        document = _new_document(options, model, server, limits, phases)
        sampler = _memory_sampler(server, options.memory_interval_s, document)
        with sampler or contextlib.nullcontext():
            document["warmup"] = _warm_up(server, tokenizer, limits)
            for phase in phases:
                console.log(f"phase {phase.name}: {phase.tokens} tokens, batch {phase.batch_size}, "
                            f"concurrency {options.concurrency}, {phase.duration_s:.0f} s")
                result = run_phase(phase, options, model, server, sampler, out_dir)
                document["phases"].append(result)
                _write(out_dir, document, sampler)  # after every phase: an interrupted soak keeps its data
        _finish(document, sampler, options)
    _write(out_dir, document, sampler)
    print_table(document)
    _print_verdict(document, out_dir)
    return document


# --- the server ---------------------------------------------------------------------------

@contextlib.contextmanager
def _server(options: LoadOptions, out_dir: Path) -> Iterator[Server]:
    if options.grpc_url or options.http_url:
        pid = options.server_pid or _listening_pid(options.grpc_url or options.http_url)
        yield Server(options.grpc_url, options.http_url, pid, started_here=False)
        return
    LocalTritonServer = local_server_class()

    log_file = out_dir / "raw" / "tritonserver.log"
    console.log(f"starting tritonserver on {options.model_repository}")
    with LocalTritonServer(options.model_repository, log_file=log_file) as started:
        yield Server(started.grpc_url, started.http_url, started.pid, started_here=True, log_file=str(log_file))


def _listening_pid(url: str) -> int | None:
    """The local process listening on url's port, or None (a remote server: no memory figures)."""
    import psutil

    host, _, port = url.rpartition(":")
    if host not in LOCAL_HOSTS or not port.isdigit():
        return None
    try:
        connections = psutil.net_connections("tcp")
    except psutil.AccessDenied:
        return None
    return next((c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)
                 and c.pid is not None), None)


def _memory_sampler(server: Server, interval_s: float, document: dict) -> memory.MemorySampler | None:
    if server.pid is None:
        document["memory_note"] = ("no memory figures: the server is not a process on this machine "
                                   "(pass --server-pid if it is)")
        console.log(f"[yellow]{document['memory_note']}")
        return None
    return memory.MemorySampler(server.pid, interval_s)


def _client_module(server: Server):
    if server.grpc_url:
        import tritonclient.grpc as grpc_client

        return grpc_client
    import tritonclient.http as http_client

    return http_client


def _client(server: Server):
    return _client_module(server).InferenceServerClient(server.url)


def model_config(server: Server, model: str) -> dict:
    client = _client(server)
    try:
        if server.grpc_url:
            return client.get_model_config(model, as_json=True)["config"]
        return client.get_model_config(model)
    finally:
        client.close()


def _limits(config: dict) -> dict[str, int]:
    """max_batch_size and the longest input (max_length parameter) from the ensemble's config."""
    max_batch_size = int(config.get("max_batch_size", 0))
    max_length = config.get("parameters", {}).get("max_length", {}).get("string_value")
    if max_batch_size < 1:
        raise ValueError(f"model {config.get('name')} does not batch (max_batch_size {max_batch_size}); "
                         "the batch phase needs a batching model")
    if not max_length:
        raise ValueError(f"model {config.get('name')} has no max_length parameter in its config; "
                         "rebuild the repository with python -m convert")
    return {"max_batch_size": max_batch_size, "max_length": int(max_length)}


def composing_models(config: dict) -> list[str]:
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def server_counts(server: Server, models: list[str]) -> dict[str, dict[str, int]]:
    """Triton's own counts per model: successful and failed requests, inferences (texts), executions.

    Triton updates them just after it answers, so read until two reads 0.2 s apart agree."""
    client = _client(server)
    try:
        previous = _read_counts(client, server, models)
        for _ in range(25):
            time.sleep(0.2)
            current = _read_counts(client, server, models)
            if current == previous:
                break
            previous = current
        return previous
    finally:
        client.close()


def _read_counts(client, server: Server, models: list[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for model in models:
        if server.grpc_url:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        else:
            stats = client.get_inference_statistics(model)["model_stats"][0]
        inference = stats.get("inference_stats", {})
        counts[model] = {
            "success": int(inference.get("success", {}).get("count", 0)),
            "fail": int(inference.get("fail", {}).get("count", 0)),
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
        }
    return counts


# --- the phases -----------------------------------------------------------------------------

def _plan(options: LoadOptions, tokenizer: Tokenizer, limits: dict[str, int], inputs_dir: Path) -> list[Phase]:
    fixed = inputs.write_input_files(tokenizer, FIXED_TOKENS, FIXED_TEXT_COUNT, inputs_dir)["ensemble"]
    mixed = inputs.write_mixed_input_files(tokenizer, limits["max_length"], inputs_dir)["ensemble"]
    shortest = inputs.special_token_count(tokenizer) + 1
    phases = [
        Phase("fixed", str(FIXED_TOKENS), fixed, 1, options.duration_s),
        Phase("mixed", f"{shortest}-{limits['max_length']}", mixed, 1, options.phase_duration_s),
    ]
    for batch_size in batch_sizes(options.batch_sizes, limits["max_batch_size"]):
        phases.append(Phase(f"batch-{batch_size}", str(FIXED_TOKENS), fixed, batch_size, options.phase_duration_s))
    return phases


def batch_sizes(requested: tuple[int, ...] | None, max_batch_size: int) -> list[int]:
    """The batch phase's sizes: the requested ones (checked), else 2, 8 and max_batch_size."""
    if requested is None:
        return sorted({size for size in (2, 8, max_batch_size) if size <= max_batch_size})
    too_large = [size for size in requested if not 1 <= size <= max_batch_size]
    if too_large:
        raise ValueError(f"batch sizes {too_large} are outside 1..{max_batch_size} (the model's max_batch_size)")
    return sorted(set(requested))


def _warm_up(server: Server, tokenizer: Tokenizer, limits: dict[str, int]) -> dict[str, Any]:
    """Send the largest input the ensemble takes (max_batch_size texts of max_length tokens) a few times.

    ONNX Runtime's memory arena grows to the largest tensors it has been given and then stays
    there. Without this, the first seconds of the mixed-length phase grow the encoder's stub
    by ~50 MiB (+12% on this machine) and read as a leak; after it they add a few MiB.
    """
    config = server.ensemble_config
    texts = inputs.exact_length_texts(tokenizer, limits["max_length"], limits["max_batch_size"], seed=WARMUP_SEED)
    batch = np.array([[text.encode()] for text in texts], dtype=np.object_)
    client_module = _client_module(server)
    request = client_module.InferInput(config["input"][0]["name"], list(batch.shape), "BYTES")
    request.set_data_from_numpy(batch)
    started = time.monotonic()
    client = _client(server)
    try:
        for _ in range(WARMUP_REQUESTS):
            try:
                client.infer(config["name"], [request])
            except Exception as error:  # tritonclient raises its own exception types per protocol
                raise RuntimeError(f"the warm-up request ({len(texts)} texts of {limits['max_length']} tokens) "
                                   f"to {config['name']} failed: {error}") from None
    finally:
        client.close()
    console.log(f"warm-up: {WARMUP_REQUESTS} requests of {len(texts)} texts x {limits['max_length']} tokens "
                f"in {time.monotonic() - started:.1f} s")
    return {"requests": WARMUP_REQUESTS, "texts_per_request": len(texts), "tokens": limits["max_length"],
            "seconds": round(time.monotonic() - started, 2)}


def run_phase(phase: Phase, options: LoadOptions, model: ModelFiles, server: Server,
              sampler: memory.MemorySampler | None, out_dir: Path) -> dict[str, Any]:
    """One perf_analyzer run, with Triton's counts before and after and memory over its span."""
    models = [model.ensemble, *composing_models(server.ensemble_config)]
    raw = out_dir / "raw" / phase.name
    raw.parent.mkdir(parents=True, exist_ok=True)
    command, settings = _command(phase, options, model, server, raw)
    raw.with_suffix(".requests.json").unlink(missing_ok=True)  # a stale export must not pass for this run's
    before = server_counts(server, models)
    started_s = sampler.now_s() if sampler else 0.0
    wall_started = time.monotonic()
    outcome = analyzer.run_perf_analyzer(command, raw.with_suffix(".csv"), raw.with_suffix(".log"),
                                         analyzer.timeout_for(settings))
    wall_s = time.monotonic() - wall_started
    ended_s = sampler.now_s() if sampler else 0.0
    after = server_counts(server, models)
    result = {**asdict(phase), "input_data": str(phase.input_data), "concurrency": options.concurrency,
              "wall_s": round(wall_s, 1), "memory_clock_s": [round(started_s, 2), round(ended_s, 2)],
              "perf_analyzer_exit": outcome.returncode, "command": " ".join(command)}
    result |= _client_figures(outcome, raw.with_suffix(".requests.json"))
    result |= _server_figures(before, after, model.ensemble)
    result["failures"] = max(result["server"][model.ensemble]["fail"], result["client_errors"])
    result["failed_models"] = {name: delta["fail"] for name, delta in result["server"].items() if delta["fail"]}
    if sampler is not None:
        result["memory"] = _memory_report(sampler, started_s, ended_s)
    result["problems"] = _phase_problems(result, options.max_memory_growth)
    _log_phase(result)
    return result


def _command(phase: Phase, options: LoadOptions, model: ModelFiles, server: Server,
             raw: Path) -> tuple[list[str], MeasurementSettings]:
    """perf_analyzer for a fixed length of load: three windows, no stability check, one async thread."""
    interval_ms = math.ceil(phase.duration_s * 1000 / WINDOWS / WINDOW_STRETCH)
    settings = MeasurementSettings(interval_ms=max(1000, interval_ms), stability_percentage=NO_STABILITY_CHECK,
                                   max_trials=WINDOWS)
    command = analyzer.build_command(
        perf_analyzer_command()[0], model=model.ensemble, url=server.url, protocol=server.protocol,
        input_data=phase.input_data, batch_size=phase.batch_size, concurrency=options.concurrency,
        settings=settings, csv_path=raw.with_suffix(".csv"),
    )
    command += ["--measurement-mode", "time_windows", "--profile-export-file", str(raw.with_suffix(".requests.json")),
                *ONE_ASYNC_THREAD]
    return command, settings


def _client_figures(outcome: analyzer.AnalyzerRun, export_path: Path) -> dict[str, Any]:
    """What perf_analyzer saw: requests in its windows, latencies (CSV), errors its threads hit."""
    figures: dict[str, Any] = {"status": "ok" if outcome.ok else "error"}
    if outcome.rows:
        figures |= {key: round(value, 3) for key, value in outcome.rows[0].items() if key != "concurrency"}
    experiment = json.loads(export_path.read_text())["experiments"][0] if export_path.is_file() else {}
    requests, windows = experiment.get("requests", []), experiment.get("window_boundaries", [])
    figures["requests"] = len(requests)
    figures["measured_s"] = round((windows[-1] - windows[0]) / 1e9, 3) if len(windows) > 1 else 0.0
    figures["unanswered"] = sum(1 for request in requests if not request.get("response_timestamps"))
    # perf_analyzer stops a thread at its first failed request: "Thread [3] had error: ...".
    error_lines = [line.strip() for line in outcome.output_tail.splitlines() if "had error" in line]
    figures["client_errors"] = len(error_lines)
    if not outcome.ok:
        figures["error"] = " | ".join(error_lines[:3]) or outcome.output_tail.strip()[-600:]
    return figures


def _server_figures(before: dict, after: dict, ensemble: str) -> dict[str, Any]:
    deltas = {model: {key: after[model][key] - before[model][key] for key in after[model]} for model in after}
    ensemble_delta = deltas[ensemble]
    figures: dict[str, Any] = {"server": deltas, "server_success": ensemble_delta["success"]}
    if ensemble_delta["success"]:
        # Texts per request as Triton counted them: the batch size perf_analyzer really sent.
        figures["texts_per_request"] = round(ensemble_delta["inferences"] / ensemble_delta["success"], 3)
    batched = {model: round(delta["inferences"] / delta["executions"], 2)
               for model, delta in deltas.items() if model != ensemble and delta["executions"]}
    figures["texts_per_execution"] = batched  # what dynamic batching made of them, per composing model
    return figures


def _memory_report(sampler: memory.MemorySampler, start_s: float, end_s: float) -> dict[str, Any]:
    try:
        report = memory.analyze(sampler.samples(), start_s, end_s)
    except ValueError as error:
        return {"error": str(error)}
    return {label: growth.as_dict() for label, growth in report.items()}


def _phase_problems(result: dict[str, Any], limit: float) -> list[str]:
    problems = []
    if result["failures"] or result["failed_models"]:
        where = ", ".join(f"{name}: {count}" for name, count in result["failed_models"].items())
        problems.append(f"{result['failures']} failed requests" + (f" (Triton fail counts {where})" if where else ""))
    if result["status"] != "ok" and not result["failures"]:
        problems.append(f"perf_analyzer exit {result['perf_analyzer_exit']}: {result.get('error', '')}")
    if result["unanswered"]:
        problems.append(f"{result['unanswered']} requests got no response")
    problems += _memory_problems(result.get("memory"), limit)
    return problems


def _memory_problems(report: dict | None, limit: float) -> list[str]:
    if report is None:
        return []
    if "error" in report:
        return [f"memory not judged: {report['error']}"]
    return memory.exceeded({label: memory.Growth(**values) for label, values in report.items()}, limit)


def _log_phase(result: dict[str, Any]) -> None:
    if result["status"] != "ok":
        console.log(f"[red]{result['name']}: perf_analyzer failed[/] {result.get('error', '')[:300]}")
        return
    total = result.get("memory", {}).get(memory.TOTAL)
    memory_text = f"  memory {total['growth']:+.1%}" if total else ""
    console.log(f"{result['name']:<10} {result['requests']:>7} requests  {result['failures']} failed  "
                f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
                f"{result['throughput']:.1f} infer/s{memory_text}")


# --- results ----------------------------------------------------------------------------------

def _new_document(options: LoadOptions, model: ModelFiles, server: Server, limits: dict[str, int],
                  phases: list[Phase]) -> dict[str, Any]:
    return {
        "started": _now(),
        "model": model.name,
        "ensemble": model.ensemble,
        "model_repository": str(options.model_repository),
        **limits,
        "concurrency": options.concurrency,
        "max_memory_growth": options.max_memory_growth,
        "server": {"grpc_url": server.grpc_url, "http_url": server.http_url, "pid": server.pid,
                   "protocol": server.protocol, "started_here": server.started_here, "log_file": server.log_file},
        "plan": [{**asdict(phase), "input_data": str(phase.input_data)} for phase in phases],
        "machine": {**describe_machine(), "perf_analyzer": perf_analyzer_version()},
        "phases": [],
    }


def _finish(document: dict[str, Any], sampler: memory.MemorySampler | None, options: LoadOptions) -> None:
    document["finished"] = _now()
    document["problems"] = [f"{phase['name']}: {problem}" for phase in document["phases"]
                            for problem in phase["problems"]]
    if sampler is not None and document["phases"]:
        # All phases together, its warm-up the first 10% of them (at least 5 s).
        start_s, end_s = document["phases"][0]["memory_clock_s"][0], document["phases"][-1]["memory_clock_s"][1]
        document["memory_whole_run"] = _memory_report(sampler, start_s, end_s)
        document["problems"] += [f"whole run: {problem}" for problem in
                                 _memory_problems(document["memory_whole_run"], options.max_memory_growth)]
    document["passed"] = not document["problems"] and len(document["phases"]) == len(document["plan"])


def _write(out_dir: Path, document: dict[str, Any], sampler: memory.MemorySampler | None) -> None:
    (out_dir / "load.json").write_text(json.dumps(document, indent=2, default=str))
    (out_dir / "summary.md").write_text(summary_markdown(document))
    if sampler is not None:
        header, rows = memory.samples_table(sampler.samples())
        with (out_dir / "memory.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def _table_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for phase in document["phases"]:
        total = phase.get("memory", {}).get(memory.TOTAL)
        rows.append([
            phase["name"], phase["tokens"], str(phase["batch_size"]), str(phase["requests"]),
            str(phase["server_success"]), str(phase["failures"]),
            _number(phase.get("p50_ms")), _number(phase.get("p99_ms")), _number(phase.get("throughput")),
            _number(total and total["warmup_mib"], 0), _number(total and total["final_mib"], 0),
            f"{total['growth']:+.1%}" if total else "-",
        ])
    whole = document.get("memory_whole_run", {}).get(memory.TOTAL)
    if whole:
        phases = document["phases"]
        rows.append(["whole run", "", "", str(sum(p["requests"] for p in phases)),
                     str(sum(p["server_success"] for p in phases)), str(sum(p["failures"] for p in phases)),
                     "-", "-", "-", f"{whole['warmup_mib']:.0f}", f"{whole['final_mib']:.0f}",
                     f"{whole['growth']:+.1%}"])
    return rows


TABLE_HEADER = ["phase", "tokens", "batch", "requests", "Triton ok", "failed", "p50 ms", "p99 ms", "infer/s",
                "mem warm-up MiB", "mem final MiB", "mem growth"]


def print_table(document: dict[str, Any]) -> None:
    table = Table(title=f"{document['ensemble']} under load, concurrency {document['concurrency']}")
    for column in TABLE_HEADER:
        table.add_column(column, justify="left" if column in ("phase", "tokens") else "right")
    for row in _table_rows(document):
        table.add_row(*row)
    console.print(table)


def summary_markdown(document: dict[str, Any]) -> str:
    lines = [
        f"# Load: {document['ensemble']}, concurrency {document['concurrency']}",
        "",
        f"Started {document['started']}, finished {document.get('finished', '(running)')}; "
        f"max_batch_size {document['max_batch_size']}, max_length {document['max_length']}; "
        f"{document['machine']['cpu_model']}, {document['machine']['cpus_usable']} cores; "
        f"{document['machine']['perf_analyzer']}.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
        *("| " + " | ".join(row) + " |" for row in _table_rows(document)),
        "",
        "Memory is the resident memory of tritonserver and its Python-backend stubs together; "
        f"growth is from the warm-up value to the final value of each phase (limit "
        f"{document['max_memory_growth']:.0%}). Per process:",
        "",
        "| phase | process | warm-up MiB | final MiB | peak MiB | growth |",
        "|---|---|---|---|---|---|",
    ]
    stretches = [(phase["name"], phase.get("memory", {})) for phase in document["phases"]]
    stretches.append(("whole run", document.get("memory_whole_run", {})))
    for name, report in stretches:
        for label, growth in report.items():
            if label != "error":
                lines.append(f"| {name} | {label} | {growth['warmup_mib']:.0f} | {growth['final_mib']:.0f} "
                             f"| {growth['peak_mib']:.0f} | {growth['growth']:+.1%} |")
    if "problems" in document:
        lines += ["", "**Passed.**" if document["passed"] else "**Failed:**"]
        lines += [f"- {problem}" for problem in document["problems"]]
    return "\n".join(lines) + "\n"


def _print_verdict(document: dict[str, Any], out_dir: Path) -> None:
    console.print(f"[bold]results:[/] {out_dir / 'load.json'}  {out_dir / 'summary.md'}")
    if document["passed"]:
        console.print("[bold green]passed:[/] no failed requests, memory within "
                      f"{document['max_memory_growth']:.0%} after warm-up in every phase")
    for problem in document["problems"]:
        console.print(f"[bold red]FAILED[/] {problem}")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
