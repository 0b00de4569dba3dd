"""The gap run's options, one parser for both ways in: `python -m perf gap` and `python -m perf.gap`.

Only argparse here: `python -m perf` builds every subcommand's parser at start, and the study
(ONNX Runtime, tritonclient, a server) is imported when the command runs.
"""
from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from ..errors import PerfError

DESCRIPTION = "the served batch-32 throughput against in-process ONNX Runtime, one run (docs/throughput.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    parser.add_argument("--model", default="minilm-embed")
    parser.add_argument("--out", type=Path, default=None, help="results folder [perf/results/gap-<timestamp>]")
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 128], help="text lengths [16 128]")
    parser.add_argument("--batch", type=int, default=32, help="texts per request [32]")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed per variant and length [30]")
    parser.add_argument("--block", type=int, default=3,
                        help="requests back to back per client and turn, the first not timed [3]")
    parser.add_argument("--ab", type=_server_change, action="append", default=[], metavar="NAME:key=value",
                        help="also serve copies of the encoder, fused model and ensemble with these config "
                             "parameters, e.g. nospin:spin=0 (repeatable)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1],
                        help="gRPC variants with this many clients at once [1]")
    parser.add_argument("--only", nargs="+", help="only variants whose name holds one of these words (and ort)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: local checkpoints only
    from .study import gap

    out_dir = args.out or Path("perf/results") / datetime.now().strftime("gap-%Y%m%d-%H%M%S")
    print(gap(args.model_repository, args.model, out_dir, lengths=args.tokens, batch=args.batch,
              seconds=args.seconds, block=args.block, changes=args.ab, concurrency=tuple(args.clients),
              only=args.only))
    return 0


def _server_change(text: str):
    """A usage error (exit 2, the option named) for a malformed --ab, not a traceback."""
    from .variants import ServerChange

    try:
        return ServerChange.parse(text)
    except PerfError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
