"""Start and stop the FastAPI baseline (perf/fastapi_app.py) as its own uvicorn process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from .models import ModelFiles
from .processes import free_port, stop_process

READY_TIMEOUT_S = 120.0  # importing FastAPI and loading the ONNX model on 2 busy cores


@contextlib.contextmanager
def fastapi_server(model: ModelFiles, log_path: Path) -> Iterator[str]:
    """Serve the model's ORT session on a free loopback port; yield "127.0.0.1:PORT"."""
    port = free_port()
    env = dict(os.environ, PERF_ONNX_MODEL=str(model.onnx_path), PERF_TOKENIZER_JSON=str(model.tokenizer_json))
    if model.labels:
        labels_file = log_path.parent / "fastapi-labels.txt"
        labels_file.write_text("\n".join(model.labels) + "\n")
        env["PERF_LABELS"] = str(labels_file)
    command = [sys.executable, "-m", "uvicorn", f"{__package__}.fastapi_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=Path(__file__).resolve().parent.parent)
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/health", process, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process, timeout_s=10)


def _wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the FastAPI baseline exited with {process.returncode}: "
                               f"{log_path.read_text()[-1500:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"the FastAPI baseline was not ready after {READY_TIMEOUT_S:.0f} s; see {log_path}")
