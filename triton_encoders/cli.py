"""`triton-encoders STAGE [options]`: run one stage as `python -m STAGE` would, from any folder.

    triton-encoders convert minilm-intent        # python -m convert minilm-intent
    triton-encoders serve --http-port 9000       # python -m serve --http-port 9000
    triton-encoders client "book a flight"       # python -m client "book a flight"
    triton-encoders perf run --preset quick      # python -m perf run --preset quick
"""
from __future__ import annotations

import runpy
import sys

from . import STAGES

ROOT_PACKAGE = __package__  # "triton_encoders"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0] not in STAGES:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nerror: name a stage: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    stage, *stage_argv = argv
    sys.argv = [f"triton-encoders {stage}", *stage_argv]
    try:
        runpy.run_module(f"{ROOT_PACKAGE}.{stage}", run_name="__main__", alter_sys=True)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith(ROOT_PACKAGE):
            print(f"error: `triton-encoders {stage}` needs the package {error.name!r}, which is not installed "
                  "here (the `client` extra holds only the client library's dependencies); install the "
                  "whole environment: pip install -r requirements.txt, from a checkout", file=sys.stderr)
            return 2
        raise
    return 0  # the stages end with sys.exit(...), which propagates as it would from python -m
