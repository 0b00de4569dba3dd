"""Command line: run the local Triton server in a terminal until Ctrl-C.

    python -m serve                       # serve triton_models/ on 8000 (HTTP), 8001 (gRPC), 8002 (metrics)
    python -m serve --http-port 0 ...     # 0: any free port
    python -m serve --model-control explicit --load-model minilm-intent
    python -m serve install               # only prepare .venv/tritonserver/ (start does it too)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from .environment import ADMIN_GRPC_HEADER, ADMIN_HTTP_HEADER, ADMIN_KEY_ENV, MODEL_CONTROL_MODES
from .errors import ServerStartError
from .install import install
from .logs import last_lines, reason_summary
from .server import STARTUP_TIMEOUT_S, LocalTritonServer

DEFAULT_REPOSITORY = Path("triton_models")  # where `python -m convert` writes by default, in the same folder


class _Terminated(Exception):
    """SIGTERM arrived: stop like on Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "install"), default="run",
                        help="run (default): start and serve until Ctrl-C; install: prepare the server tree only")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY,
                        help=f"model repository to serve (default: {DEFAULT_REPOSITORY})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the server to the network)")
    parser.add_argument("--http-port", type=int, default=8000, help="0 for any free port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 for any free port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0 for any free port")
    parser.add_argument("--model-control", choices=MODEL_CONTROL_MODES, default="none",
                        help="none: load every model at start; explicit: only --load-model ones")
    parser.add_argument("--load-model", action="append", default=[], metavar="NAME",
                        help="with --model-control explicit: load this model at start (repeatable; '*' for all)")
    parser.add_argument("--allow-load-failures", action="store_true",
                        help="keep serving the models that loaded when others fail")
    parser.add_argument("--no-restore", dest="restore", action="store_false",
                        help="do not reload a model whose Python-backend process dies (Triton 2.51 does not "
                             "restart it; with this flag, 'none' model control is Triton's own)")
    parser.add_argument("--open-shared-memory-api", action="store_true",
                        help="let clients register shared memory without the admin key (perf_analyzer over gRPC)")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S, metavar="SECONDS")
    parser.add_argument("--log-file", type=Path, help="server log (default: a new file in the temp folder)")
    parser.add_argument("--log-verbose", type=int, default=0, help="Triton's verbose level (0 = off)")
    parser.add_argument("--verbose", action="store_true", help="also print the server log as it is written")
    parser.add_argument("--force", action="store_true", help="install: copy the server tree again")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "install":
            print(install(force=args.force).root)
            return 0
        return _run(args)
    except ServerStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    server = LocalTritonServer(
        args.model_repository, host=args.host, http_port=args.http_port or None,
        grpc_port=args.grpc_port or None, metrics_port=args.metrics_port or None,
        model_control=args.model_control, load_models=args.load_model, log_file=args.log_file,
        log_verbose=args.log_verbose, allow_load_failures=args.allow_load_failures,
        startup_timeout_s=args.startup_timeout, stream_log=args.verbose, restore_crashed_models=args.restore,
        open_shared_memory_api=args.open_shared_memory_api,
    )
    signal.signal(signal.SIGTERM, _raise_terminated)
    # Ctrl-C even when started in the background, where the shell set SIGINT to "ignore".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.start()
        _print_banner(server)
        return _wait_while_running(server)
    except (KeyboardInterrupt, _Terminated):
        print("stopping tritonserver ...", file=sys.stderr)
        return 0
    finally:
        server.stop()


def _wait_while_running(server: LocalTritonServer) -> int:
    while server.is_running():
        time.sleep(0.5)
    print(f"tritonserver exited on its own (exit code {server.exit_code}); last lines of "
          f"{server.log_path}:\n{last_lines(server.log_path)}", file=sys.stderr)
    return 1


def _print_banner(server: LocalTritonServer) -> None:
    failures = server.model_load_failures()
    key_source = f"${ADMIN_KEY_ENV}" if server.admin_key_from_caller else "a key generated for this run (not shown)"
    lines = [
        f"tritonserver is serving {server.model_repository}",
        f"  HTTP      {server.http_url}",
        f"  gRPC      {server.grpc_url}",
        f"  metrics   {server.metrics_url}",
        f"  ready     {', '.join(server.ready_models()) or '(none)'}",
        *(f"  FAILED    {name}: {reason_summary(reason)}" for name, reason in sorted(failures.items())),
        f"  log       {server.log_path}",
        "  watchdog  " + ("reloads a model whose Python-backend process dies" if server.restore_crashed_models
                          else "off (--no-restore): a model whose Python-backend process dies stays down"),
        f"  model load/unload/index: restricted to header {ADMIN_HTTP_HEADER} (HTTP) / "
        f"{ADMIN_GRPC_HEADER} (gRPC) carrying {key_source}",
        "Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


if __name__ == "__main__":
    sys.exit(main())
