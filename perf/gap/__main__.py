"""python -m perf.gap: the served batch-32 throughput against in-process ONNX Runtime, one run."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from ..errors import PerfError
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gap", description=__doc__)
    parser.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    parser.add_argument("--model", default="minilm-embed")
    parser.add_argument("--out", type=Path, default=None, help="results folder [perf/results/gap-<timestamp>]")
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 128], help="text lengths [16 128]")
    parser.add_argument("--batch", type=int, default=32, help="texts per request [32]")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed per variant and length [30]")
    parser.add_argument("--block", type=int, default=3,
                        help="requests back to back per client and turn, the first not timed [3]")
    parser.add_argument("--ab", type=ServerChange.parse, action="append", default=[], metavar="NAME:key=value",
                        help="also serve copies of the encoder, fused model and ensemble with these config "
                             "parameters, e.g. nospin:spin=0 (repeatable)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1],
                        help="gRPC variants with this many clients at once [1]")
    parser.add_argument("--only", nargs="+", help="only variants whose name holds one of these words (and ort)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_dir = args.out or Path("perf/results") / datetime.now().strftime("gap-%Y%m%d-%H%M%S")
    try:
        print(gap(args.model_repository, args.model, out_dir, lengths=args.tokens, batch=args.batch,
                  seconds=args.seconds, block=args.block, changes=args.ab, concurrency=tuple(args.clients),
                  only=args.only))
    except (PerfError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
