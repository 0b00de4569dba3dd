"""CLI: python -m perf install | run | report | inputs | load | tune | peers | arch | gap."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from .errors import PerfError


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
    run.add_argument("--rounds", type=_positive, default=1,
                     help="run the whole sweep N times; each figure is the median over the rounds [1]")

    report = commands.add_parser("report", help="rewrite report.md and plots from a results folder")
    report.add_argument("results_dir", type=Path)

    inputs = commands.add_parser("inputs", help="write exact-length input files only")
    inputs.add_argument("--tokenizer-json", type=Path, required=True)
    inputs.add_argument("--seq-len", type=int, nargs="+", default=[16, 128])
    inputs.add_argument("--count", type=int, default=64)
    inputs.add_argument("--out", type=Path, default=Path("perf/inputs"))

    load = commands.add_parser("load", help="sustained load on the ensemble: failures, latency, server memory")
    load.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    load.add_argument("--model", default="minilm-intent")
    load.add_argument("--duration-s", type=float, default=60.0,
                      help="length of the fixed 16-token phase at --concurrency [60]")
    load.add_argument("--soak", action="store_true", help="make that phase 10 minutes (--duration-s 600)")
    load.add_argument("--phase-duration-s", type=float, default=60.0,
                      help="length of the mixed-length phase and of each batch size [60]")
    load.add_argument("--batch-sizes", type=_sizes, default=None,
                      help="comma-separated batch sizes for the batch phase [2,8,max_batch_size]")
    load.add_argument("--concurrency", type=int, default=16)
    load.add_argument("--out", type=Path, default=None, help="results folder [perf/results/load-<timestamp>]")
    load.add_argument("--http-url", "--url", dest="http_url", help="HTTP host:port of a running server")
    load.add_argument("--grpc-url", help="gRPC host:port of a running server (preferred over HTTP)")
    load.add_argument("--server-pid", type=int, help="pid of that server, for memory sampling "
                      "(found from its port when it listens on this machine)")

    peers = commands.add_parser("peers", help="infinity-emb, sentence-transformers, fastembed, ONNX Runtime and "
                                "the served ensemble on the same texts: checked, then measured (docs/peers.md)")
    peers.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    peers.add_argument("--model", default="minilm-embed")
    peers.add_argument("--out", type=Path, default=None, help="results folder [perf/results/peers-<timestamp>]")
    peers.add_argument("--quick", action="store_true", help="2 s per figure instead of 10 (a first look)")
    peers.add_argument("--seconds", type=float, default=None, help="seconds per figure [10; 2 with --quick]")
    peers.add_argument("--peers", dest="peer_names", type=_names, default=None,
                       help="comma-separated subset, e.g. fastembed,triton-grpc [all]")
    peers.add_argument("--seq-len", type=int, nargs="+", default=[16, 128])
    peers.add_argument("--rounds", type=_positive, default=1,
                       help="every peer N times in turn; each figure is the median over the rounds [1]")

    arch = commands.add_parser("arch", help="size-and-length study: five architectures, six runtimes, 16-512 tokens")
    arch.add_argument("--preset", choices=("quick", "full"), default="quick")
    arch.add_argument("--out", type=Path, default=None, help="results folder [perf/results/arch-<timestamp>]")
    arch.add_argument("--cache", type=Path, default=Path("build/arch"),
                      help="checkpoints and builds, reused by later runs [build/arch]")
    arch.add_argument("--report-only", action="store_true", help="rewrite report.md and plots of --out")

    from .gap import cli as gap_cli
    from .tune import cli as tune_cli

    tune_cli.add_parser(commands)
    gap_cli.add_arguments(commands.add_parser("gap", help=gap_cli.DESCRIPTION, description=gap_cli.DESCRIPTION))

    args = parser.parse_args(argv)
    command = {"install": _install, "run": _run, "report": _report, "inputs": _inputs, "load": _load,
               "peers": _peers, "tune": tune_cli.run, "arch": _arch, "gap": gap_cli.run}[args.command]
    try:
        return command(args)
    except (PerfError, OSError) as error:  # what the user can fix; anything else is a bug: its traceback shows
        print(f"error: {error}", file=sys.stderr)  # one line that says what to fix, no traceback
        return 2


def _install(args: argparse.Namespace) -> int:
    from .install import install, perf_analyzer_version

    print(install(force=args.force))
    print(perf_analyzer_version())
    return 0


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: local checkpoints only
    from .runner import RunOptions, run

    out_dir = args.out or Path("perf/results") / datetime.now().strftime("%Y%m%d-%H%M%S")
    run(RunOptions(args.preset, args.model_repository, args.model, out_dir, args.http_url, args.grpc_url,
                   args.checkpoint, args.head, args.rounds))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.results_dir))
    return 0


def _inputs(args: argparse.Namespace) -> int:
    from .inputs import load_tokenizer, write_input_files

    tokenizer = load_tokenizer(args.tokenizer_json)
    for seq_len in args.seq_len:
        for kind, path in write_input_files(tokenizer, seq_len, args.count, args.out).items():
            print(f"{seq_len:>4} tokens  {kind:<8} {path}")
    return 0


def _load(args: argparse.Namespace) -> int:
    """Exit 1 when a request failed or memory grew too much (the reasons are printed), else 0."""
    from .load import SOAK_DURATION_S, LoadOptions, load

    out_dir = args.out or Path("perf/results") / datetime.now().strftime("load-%Y%m%d-%H%M%S")
    document = load(LoadOptions(
        model_repository=args.model_repository, out_dir=out_dir, model=args.model,
        duration_s=SOAK_DURATION_S if args.soak else args.duration_s, phase_duration_s=args.phase_duration_s,
        concurrency=args.concurrency, batch_sizes=args.batch_sizes, grpc_url=args.grpc_url,
        http_url=args.http_url, server_pid=args.server_pid,
    ))
    return 0 if document["passed"] else 1


def _peers(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every peer loads the local checkpoint
    from .peers.run import PEERS, PeerOptions, run_peers
    from .runner import _build_if_missing

    _build_if_missing(args.model_repository, args.model)
    out_dir = args.out or Path("perf/results") / datetime.now().strftime("peers-%Y%m%d-%H%M%S")
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    print(run_peers(PeerOptions(args.model_repository, out_dir, args.model, args.peer_names or tuple(PEERS),
                                tuple(args.seq_len), seconds=seconds, warmup_requests=3 if args.quick else 10,
                                rounds=args.rounds)))
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _arch(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: local checkpoints only
    from .arch.report import write_arch_report
    from .arch.study import PRESETS, run_study

    if args.report_only and args.out is None:
        raise PerfError("--report-only needs --out, the results folder to rewrite the report of")
    out_dir = args.out or Path("perf/results") / datetime.now().strftime("arch-%Y%m%d-%H%M%S")
    if not args.report_only:
        run_study(PRESETS[args.preset], out_dir, args.cache)
    print(write_arch_report(out_dir))
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 2,8,32") from None


if __name__ == "__main__":
    sys.exit(main())
