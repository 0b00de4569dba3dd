"""An infinity-emb REST server from the peers venv, on a free port, for the length of a `with`.

    with infinity_server("optimum", model_folder, log_file) as url:   # "127.0.0.1:PORT"

Both engines load the local folder. The torch engine reads the sentence-transformers folder
(mean pooling from its modules.json). The optimum (ONNX Runtime) engine wants an exported
`model.onnx` at the folder's root and is started from inside it with `--model-id .`; it pools
the CLS token unless told `--pooling-method mean`, which is therefore passed to both.
"""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from pathlib import Path
from typing import Iterator

from ..errors import PerfError
from ..processes import free_port, stop_process
from .environment import peer_environment, peers_bin

SERVED_NAME = "minilm"
START_TIMEOUT_S = 300.0  # loading torch and warming up on a loaded 2-core machine


def infinity_command(engine: str, model_id: str, port: int) -> list[str]:
    return [str(peers_bin("infinity_emb")), "v2", "--model-id", model_id, "--served-model-name", SERVED_NAME,
            "--engine", engine, "--device", "cpu", "--pooling-method", "mean", "--no-bettertransformer",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


@contextlib.contextmanager
def infinity_server(engine: str, model_folder: Path, log_file: Path) -> Iterator[str]:
    """Start it (from inside model_folder, `--model-id .`), wait for /health, stop it at the end."""
    port = free_port()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        process = subprocess.Popen(infinity_command(engine, ".", port), cwd=model_folder, stdout=log,
                                   stderr=subprocess.STDOUT, env=peer_environment())
    url = f"127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, log_file)
        yield url
    finally:
        stop_process(process, timeout_s=30)


def _wait_healthy(process: subprocess.Popen, url: str, log_file: Path) -> None:
    host, _, port = url.rpartition(":")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PerfError(f"infinity_emb exited ({process.returncode}) before answering: {_tail(log_file)}")
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(1.0)
    raise PerfError(f"infinity_emb did not answer /health within {START_TIMEOUT_S:.0f} s: {_tail(log_file)}")


def _tail(log_file: Path) -> str:
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-6:])
