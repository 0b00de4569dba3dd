"""Where Model Analyzer lives and the process environment it must run in.

Model Analyzer 1.58 (PyPI `triton-model-analyzer`) brings numpy 2 and tritonclient 2.73, so it
has its own virtual environment, `.venv/analyzer`, made by scripts/setup-analyzer.sh; the
serving venv keeps numpy < 2 (its Python-backend stub breaks on numpy 2).

It starts tritonserver itself (`triton_launch_mode: local`). The server's PATH and
LD_LIBRARY_PATH must be in Model Analyzer's own environment: its `triton_server_environment`
setting did not reach the local server. They are the launcher's (serve.environment): the
serving venv's bin/ first on PATH (the Python-backend stub finds numpy, onnxruntime and
tokenizers through it), this Python's libpython and the wheel's libraries on
LD_LIBRARY_PATH, plus perf_analyzer's two libraries.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import PerfError
from ..install import install as install_perf_analyzer
from ..install import library_dir
from ..stages import stage

ANALYZER_VENV_ENV = "TRITON_ENCODERS_ANALYZER_VENV"   # another venv holding model-analyzer
ANALYZER_VERSION = "1.58.0"                             # what scripts/setup-analyzer.sh installs


@dataclass(frozen=True)
class AnalyzerTools:
    """Everything one Model Analyzer run is started with."""
    model_analyzer: Path       # the venv's model-analyzer script
    tritonserver: Path
    backend_directory: Path
    cache_directory: Path
    perf_analyzer: Path
    environment: dict[str, str]


def analyzer_venv() -> Path:
    """`.venv/analyzer` beside the serving venv, or $TRITON_ENCODERS_ANALYZER_VENV."""
    return Path(os.environ.get(ANALYZER_VENV_ENV) or Path(sys.prefix) / "analyzer")


def model_analyzer_script() -> Path:
    script = analyzer_venv() / "bin" / "model-analyzer"
    if not script.is_file():
        raise PerfError(
            f"Model Analyzer is not installed ({script} missing). Run `scripts/setup-analyzer.sh` "
            f"(make setup does), or point ${ANALYZER_VENV_ENV} at a venv with "
            f"triton-model-analyzer=={ANALYZER_VERSION}.")
    return script


def analyzer_tools() -> AnalyzerTools:
    """Model Analyzer, the local tritonserver and perf_analyzer, installed if needed, and the env."""
    server = stage("serve.install").install()
    perf_analyzer = install_perf_analyzer()
    environment = stage("serve.environment").server_environment()
    environment["LD_LIBRARY_PATH"] = os.pathsep.join([environment["LD_LIBRARY_PATH"], str(library_dir())])
    return AnalyzerTools(model_analyzer_script(), server.binary, server.backend_directory,
                         server.cache_directory, perf_analyzer, environment)
