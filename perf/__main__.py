"""CLI: python -m perf install | run | report | inputs."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    install = commands.add_parser("install", help="put perf_analyzer under .venv/perf_analyzer (idempotent)")
    install.add_argument("--force", action="store_true", help="download and extract again")

    run = commands.add_parser("run", help="measure a sweep preset and write results + report")
    run.add_argument("--preset", default="quick", help="quick | full | gpu-t4 | path to a sweep .yaml")
    run.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    run.add_argument("--model", default="minilm-intent")
    run.add_argument("--out", type=Path, default=None, help="results folder [perf/results/<timestamp>]")
    run.add_argument("--http-url", "--url", dest="http_url", help="HTTP host:port of a running server")
    run.add_argument("--grpc-url", help="gRPC host:port of a running server")
    run.add_argument("--checkpoint", type=Path, help="Hugging Face folder for the PyTorch baseline")
    run.add_argument("--head", type=Path, help="scikit-learn .joblib head for the PyTorch baseline")

    report = commands.add_parser("report", help="rewrite report.md and plots from a results folder")
    report.add_argument("results_dir", type=Path)

    inputs = commands.add_parser("inputs", help="write exact-length input files only")
    inputs.add_argument("--tokenizer-json", type=Path, required=True)
    inputs.add_argument("--seq-len", type=int, nargs="+", default=[16, 128])
    inputs.add_argument("--count", type=int, default=64)
    inputs.add_argument("--out", type=Path, default=Path("perf/inputs"))

    args = parser.parse_args(argv)
    command = {"install": _install, "run": _run, "report": _report, "inputs": _inputs}[args.command]
    try:
        return command(args)
    except (OSError, KeyError, ValueError, RuntimeError) as error:  # SweepError and install errors included
        message = error.args[0] if isinstance(error, KeyError) and error.args else error  # no repr quotes
        print(f"error: {message}", file=sys.stderr)  # one line that says what to fix, no traceback
        return 2


def _install(args: argparse.Namespace) -> int:
    from perf.install import install, perf_analyzer_version

    print(install(force=args.force))
    print(perf_analyzer_version())
    return 0


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: local checkpoints only
    from perf.runner import RunOptions, run

    out_dir = args.out or Path("perf/results") / datetime.now().strftime("%Y%m%d-%H%M%S")
    run(RunOptions(args.preset, args.model_repository, args.model, out_dir, args.http_url, args.grpc_url,
                   args.checkpoint, args.head))
    return 0


def _report(args: argparse.Namespace) -> int:
    from perf.report import write_report

    print(write_report(args.results_dir))
    return 0


def _inputs(args: argparse.Namespace) -> int:
    from perf.inputs import load_tokenizer, write_input_files

    tokenizer = load_tokenizer(args.tokenizer_json)
    for seq_len in args.seq_len:
        for kind, path in write_input_files(tokenizer, seq_len, args.count, args.out).items():
            print(f"{seq_len:>4} tokens  {kind:<8} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
