"""The gap study: the served batch-32 throughput against in-process ONNX Runtime, one run."""
from __future__ import annotations

from pathlib import Path

from ..inputs import exact_length_texts, load_tokenizer
from ..machine import describe_machine
from ..models import resolve_model
from ..triton import triton_server
from .measure import GapRun, run_interleaved
from .report import write_report
from .variants import ServerChange, inprocess_variants, repository_with_changes, served_variants


def gap(repository: Path, model_name: str, out_dir: Path, *, lengths: list[int], batch: int, seconds: float, block: int,
        changes: list[ServerChange], concurrency: tuple[int, ...], only: list[str] | None) -> Path:
    model = resolve_model(repository, model_name)
    tokenizer = load_tokenizer(model.tokenizer_json)
    texts = {length: exact_length_texts(tokenizer, length, max(4 * batch, 64)) for length in lengths}
    out_dir.mkdir(parents=True, exist_ok=True)
    served = repository_with_changes(repository, model.names, changes, out_dir / "repository")
    run = GapRun(model_name, lengths, seconds, block, batch)
    variants = inprocess_variants(model, repository)
    with triton_server(served, log_file=out_dir / "tritonserver.log") as server:
        for suffix in [""] + [f"-{change.name}" for change in changes]:
            variants += served_variants(model, server.http_url, server.grpc_url, suffix, concurrency)
        if only:  # the floor always runs: every ratio is to it
            variants = [v for v in variants if v.name == "ort" or any(word in v.name for word in only)]
        run_interleaved(run, variants, texts, server.grpc_url, server.pid)
    return write_report(run, out_dir, describe_machine())
