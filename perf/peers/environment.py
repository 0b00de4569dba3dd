"""Where the peers' venv is, and running `_runner.py` in it.

The peers need transformers 4 and sentence-transformers < 4 (infinity-emb's pins) where the
serving venv has transformers 5, so they get their own venv: `.venv/peers`, made by
scripts/setup-peers.sh (called by scripts/setup.sh), or the one $TRITON_ENCODERS_PEERS_VENV names.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import PerfError

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "_runner.py"
VENV_VARIABLE = "TRITON_ENCODERS_PEERS_VENV"


def peers_venv() -> Path:
    return Path(os.environ.get(VENV_VARIABLE) or REPOSITORY_ROOT / ".venv" / "peers")


def peers_bin(program: str) -> Path:
    """A program of the peers venv (python, infinity_emb), or a PerfError that says how to make it."""
    path = peers_venv() / "bin" / program
    if not path.is_file():
        raise PerfError(f"{path} is missing: create the peers' environment with "
                        f"`scripts/setup-peers.sh python3.11 {peers_venv()}` (a few minutes; "
                        f"scripts/setup.sh does it) or point ${VENV_VARIABLE} at one")
    return path


def peer_environment() -> dict[str, str]:
    """The environment every peer runs in: offline, no usage statistics sent anywhere."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "TOKENIZERS_PARALLELISM": "false"}


def run_job(job: dict[str, Any], timeout_s: float, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one runner job in the peers venv; its stderr lines are shown as progress as they come."""
    command = [str(peers_bin("python")), str(RUNNER)]
    # stdout (embeddings: more than a pipe holds) to a file, so the runner never blocks on it
    # while stderr is read here line by line.
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE,
                                   text=True, env=peer_environment())
        assert process.stdin and process.stderr
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        timed_out = threading.Event()
        watchdog = threading.Timer(timeout_s, lambda: (timed_out.set(), process.kill()))  # never hang the run
        watchdog.start()
        tail: list[str] = []
        try:
            for line in process.stderr:  # ends when the runner exits
                tail = (tail + [line.rstrip()])[-15:]
                if line.startswith(job["peer"]):
                    progress(line.rstrip())
            process.wait()
        finally:
            watchdog.cancel()
        if timed_out.is_set():
            raise PerfError(f"the {job['peer']} runner took longer than {timeout_s:.0f} s and was stopped")
        stdout.seek(0)
        return parse_runner_output(job["peer"], process.returncode, stdout.read(), tail)


def parse_runner_output(peer: str, returncode: int, stdout: str, stderr_tail: list[str]) -> dict[str, Any]:
    """The runner's JSON (its last stdout line), or a PerfError quoting the end of its stderr."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if returncode != 0 or not lines:
        details = " | ".join(line for line in stderr_tail[-6:] if line.strip())
        raise PerfError(f"the {peer} runner failed (exit {returncode}): {details or 'no output'}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise PerfError(f"the {peer} runner printed something that is not JSON: {lines[-1][:200]!r}") from None

