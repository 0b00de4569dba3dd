"""The baseline servers' processes (FastAPI, infinity-emb): a port to start one on, and a stop."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A loopback port free now (another process may still take it before the server binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout_s`; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
