"""python -m perf.gap, the same command as `python -m perf gap`: the served batch-32 throughput
against in-process ONNX Runtime, one run."""
from __future__ import annotations

import argparse
import sys

from ..errors import PerfError
from .cli import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gap", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (PerfError, OSError) as error:  # what the user can fix, in one line; anything else is a bug
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
