"""Reading the server's log: its last lines, what it says went wrong, and following it live.

Triton writes one event per line, e.g.
    E1122 04:48:06.029 5291 model_lifecycle.cc:642] "failed to load 'broken' version 1: Internal: ..."
    E1122 04:48:40.369 5659 main.cc:245] "failed to start GRPC service: Unavailable - Socket '127.0.0.1:28001' \
already in use "   (on one line)
with newlines inside a message written as a literal backslash-n.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TextIO

_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<reason>.*?)\"?\s*$")
# An ensemble is never loaded when a model it needs failed; Triton says why only in its log:
#   E... model_repository_manager.cc:703] "Invalid argument: ensemble 'x' depends on 'y'
#   which has no loaded version. Model 'y' loading failed with error: ...;"
_DEPENDS_ON = r"ensemble '(?P<model>[^']+)' depends on '[^']+' which has no loaded version"
_FAILED_DEPENDENCY = re.compile(r"\] \"(?P<reason>(?:[\w ]+: )?" + _DEPENDS_ON + r".*?);?\"?\s*$")
# A Python-backend reason ends with its traceback, innermost frame first:
#   "At:\n  /path/model.py(32): load_tokenizer\n  /path/model.py(79): initialize"
_FRAME = re.compile(r"^\s+(?P<path>/\S+\.py)\((?P<line>\d+)\): (?P<function>\S+)\s*$")
_LOADING = re.compile(r"\"loading: (?P<model>[^:\"]+):\d+\"")
_LOADED = re.compile(r"successfully loaded '(?P<model>[^']+)'")
_PORT_IN_USE = re.compile(r"failed to start \w+ service: .*already in use", re.IGNORECASE)
# Triton's error lines start "E<mmdd>"; option errors come before a usage dump.
_ERROR = re.compile(r"^E\d{4} |error|unrecognized option|invalid", re.IGNORECASE)
# No GPU here: Triton says so at every start, and ensembles cannot make a CUDA stream.
_HARMLESS = ("Failed to initialize NVML", "DCGM unable to start", "CudaDriverHelper has not been initialized",
             "CUDA driver version is insufficient")
_USAGE = "Usage: tritonserver"


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def last_lines(path: Path, count: int = 15) -> str:
    """The log's last `count` lines, indented, for quoting in an error message."""
    lines = read_log(path).rstrip().splitlines()[-count:]
    return "\n".join("    " + line for line in lines) or "    (the log is empty)"


def error_lines(log_text: str, count: int = 8) -> list[str]:
    """The last `count` lines that report an error, without the usage dump and GPU noise."""
    before_usage = log_text.split(_USAGE, 1)[0]
    return [
        line.strip() for line in before_usage.splitlines()
        if _ERROR.search(line) and not any(harmless in line for harmless in _HARMLESS)
    ][-count:]


def load_failures(log_text: str) -> dict[str, str]:
    """Model name -> Triton's reason, from its "failed to load" lines and, for ensembles
    that were never loaded because a model they need failed, its "depends on" lines."""
    lines = log_text.splitlines()
    dependencies = dependency_failures(log_text)
    return dependencies | {
        match["model"]: _unescape(match["reason"]) for match in map(_FAILED_LOAD.search, lines) if match
    }


def dependency_failures(log_text: str) -> dict[str, str]:
    """Ensemble name -> Triton's reason it was not loaded (a model it depends on failed)."""
    return {
        match["model"]: _unescape(match["reason"])
        for match in map(_FAILED_DEPENDENCY.search, log_text.splitlines()) if match
    }


def reason_summary(reason: str) -> str:
    """One line for a load failure: Triton's first line, plus where in the model's own code
    a Python traceback points (its innermost frame outside site-packages), e.g.
        Internal: Exception: No such file or directory (os error 2)
            [at minilm-intent-tokenizer/1/model.py:32 in load_tokenizer]    (on one line)"""
    lines = reason.strip().splitlines()
    first = lines[0] if lines else "(no reason given)"
    if re.search(_DEPENDS_ON, first):  # the model it names has its own line, with its reason
        return first.split(" Model '", 1)[0]
    for line in lines[1:]:
        frame = _FRAME.match(line)
        if frame and "site-packages" not in frame["path"]:
            where = "/".join(Path(frame["path"]).parts[-3:])
            return f"{first} [at {where}:{frame['line']} in {frame['function']}]"
    return first


def models_still_loading(log_text: str) -> list[str]:
    """Models Triton said it is loading and has not yet reported loaded or failed."""
    lines = log_text.splitlines()
    started = [m["model"] for m in map(_LOADING.search, lines) if m]
    finished = {m["model"] for m in map(_LOADED.search, lines) if m} | set(load_failures(log_text))
    return [model for model in dict.fromkeys(started) if model not in finished]


def port_conflicts(log_text: str) -> list[str]:
    """Triton's own "failed to start <protocol> service: ... already in use" lines."""
    return [line.strip() for line in log_text.splitlines() if _PORT_IN_USE.search(line)]


def _unescape(reason: str) -> str:
    return reason.replace("\\n", "\n").replace('\\"', '"').strip()


class LogFollower:
    """Copies new lines of a log file to a stream (the console) until stopped."""

    def __init__(self, path: Path, stream: TextIO = sys.stderr, poll_s: float = 0.2) -> None:
        self._path = path
        self._stream = stream
        self._poll_s = poll_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"follow {path.name}", daemon=True)

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        with open(self._path, errors="replace") as log:
            # One last read after stop() so the server's final lines are shown too.
            while True:
                stopping = self._stopped.wait(self._poll_s)
                chunk = log.read()
                if chunk:
                    self._stream.write(chunk)
                    self._stream.flush()
                if stopping:
                    return
