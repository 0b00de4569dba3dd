"""The command line and the process environment the tritonserver binary is started with.

Choices made here, and why:
- `--model-control-mode`: what the launcher decided (serve.server): its default "none"
  runs as explicit mode loading every model, so that the stub watchdog can reload a
  model whose Python process died; `restore_crashed_models=False` passes "none" as is.
- `--exit-on-error=false`: Triton would otherwise exit with only "failed to load all
  models". We let it come up, read each model's state and reason from the repository
  index, and then the launcher decides: stop and raise quoting those reasons (default)
  or keep serving the models that loaded (`allow_load_failures=True`).
- `--disable-auto-complete-config`: our configs are generated complete from the
  ModelConfig protobuf; a missing field should fail the load, not be guessed by Triton.
- `--strict-readiness=true`: /v2/health/ready means every model is ready.
- The model-repository API (load, unload, index), and the logging and trace settings,
  are restricted to callers that send the admin key (RESTRICTED_APIS), as in the GPU
  deployment (docs/GPU.md): loading a model runs its code on this machine.
  Triton takes the key only on its command line, so local users who can list
  processes can read it; the guard is against the network, not against this host.
- A per-server prefix for the Python backend's shared-memory regions, so the
  launcher can remove exactly its own regions from /dev/shm if a stub was killed.
- Request size (MAX_REQUEST_BYTES, 16 MiB). Triton 2.51, the wheel's build, has no flag
  for it: it reads HTTP bodies of any size (and inflates gzip/deflate bodies without a
  cap), and gRPC messages up to 2 GiB - 1 (INT32_MAX, fixed in the binary). Later
  builds have `--http-max-input-size` (default 64 MiB); where `--help` lists it, it is
  set to MAX_REQUEST_BYTES. On every build the Python models refuse a request holding
  more text than that (MAX_REQUEST_TEXT_BYTES in convert/python_models/tokenizer_model.py,
  the same number) and read at most max_length x 100 characters of each text. The
  server binds 127.0.0.1 by default, so on 2.51 only this machine can send it a body
  larger than that.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .install import TritonInstall, wheel_libraries

RESTRICTED_APIS = ("model-repository", "logging", "trace")  # the same as docker-compose.yml
# Also restricted locally unless asked otherwise: registering a shared-memory region lets a
# client have Triton read and write any /dev/shm object it names, another server's Python
# backend regions included. perf_analyzer 2.41 cannot send the key over gRPC, so perf's own
# servers open it (LocalTritonServer(open_shared_memory_api=True)).
SHARED_MEMORY_API = "shared-memory"
ADMIN_KEY_ENV = "TRITON_ADMIN_KEY"
ADMIN_HTTP_HEADER = "triton-admin-key"
# Triton checks gRPC metadata under the header name prefixed with "triton-grpc-protocol-".
ADMIN_GRPC_HEADER = "triton-grpc-protocol-" + ADMIN_HTTP_HEADER
EXIT_TIMEOUT_S = 3  # how long Triton waits for in-flight requests when told to stop
MODEL_CONTROL_MODES = ("none", "explicit")
# The largest request: 32 texts (max_batch_size) of 12,800 characters (128 tokens x 100)
# fit several times over, in UTF-8 or JSON. Enforced as described at the top.
MAX_REQUEST_BYTES = 16 * 2**20
HTTP_MAX_INPUT_SIZE_FLAG = "--http-max-input-size"   # not in 2.51; in later builds


@dataclass(frozen=True)
class ServerSettings:
    """Everything one server start needs, already resolved (ports picked, key chosen)."""
    model_repository: Path
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    model_control: str
    load_models: tuple[str, ...]
    admin_key: str
    shm_prefix: str
    restrict_shared_memory: bool = True
    log_verbose: int = 0
    extra_args: tuple[str, ...] = ()


def server_command(settings: ServerSettings, installed: TritonInstall) -> list[str]:
    """argv for tritonserver; logs go to stdout/stderr, which the launcher sends to a file."""
    apis = RESTRICTED_APIS + ((SHARED_MEMORY_API,) if settings.restrict_shared_memory else ())
    restriction = f"{','.join(apis)}:{ADMIN_HTTP_HEADER}={settings.admin_key}"
    command = [
        str(installed.binary),
        f"--model-repository={settings.model_repository}",
        f"--backend-directory={installed.backend_directory}",
        f"--cache-directory={installed.cache_directory}",
        f"--backend-config=python,shm-region-prefix-name={settings.shm_prefix}",
        f"--http-address={settings.host}",
        f"--grpc-address={settings.host}",
        f"--metrics-address={settings.host}",
        f"--http-port={settings.http_port}",
        f"--grpc-port={settings.grpc_port}",
        f"--metrics-port={settings.metrics_port}",
        # Per-model latency percentiles (off by default in Triton); the dashboard reads them.
        "--metrics-config=summary_latencies=true",
        f"--http-restricted-api={restriction}",
        f"--grpc-restricted-protocol={restriction}",
        f"--model-control-mode={settings.model_control}",
        *(f"--load-model={name}" for name in settings.load_models),
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        "--exit-on-error=false",
        "--strict-readiness=true",
        "--disable-auto-complete-config",
        f"--log-verbose={settings.log_verbose}",
    ]
    if HTTP_MAX_INPUT_SIZE_FLAG in supported_options(installed.binary):
        command.append(f"{HTTP_MAX_INPUT_SIZE_FLAG}={MAX_REQUEST_BYTES}")
    return command + list(settings.extra_args)


@functools.lru_cache(maxsize=None)
def supported_options(binary: Path) -> frozenset[str]:
    """The long options `tritonserver --help` lists, so that a flag newer than the
    installed build is only passed where it exists (an unknown one stops the start)."""
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                            env=server_environment(), timeout=60, check=False)  # --help exits 1
    return frozenset(re.findall(r"^\s+(--[a-z0-9-]+)", result.stdout + result.stderr, re.MULTILINE))


def server_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment tritonserver and its Python-backend stubs need.

    - The venv's bin/ first on PATH: the stub's embedded interpreter ignores
      PYTHONPATH and finds the venv's site-packages (numpy, onnxruntime, tokenizers)
      only through the `python` it sees on PATH.
    - This interpreter's LIBDIR first on LD_LIBRARY_PATH: the stub must load this
      Python's own libpython3.X.so; another one (e.g. Debian's) fails with
      "'_thread.RLock' object has no attribute '_recursion_count'".
    - nvidia_pytriton.libs on LD_LIBRARY_PATH: the binaries' RPATH points there
      relative to the wheel, which no longer holds after the copy.
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(filter(None, [venv_bin, env.get("PATH", "")]))
    library_dirs = [sysconfig.get_config_var("LIBDIR") or "", str(wheel_libraries()),
                    env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, library_dirs))
    return env


def admin_headers(admin_key: str) -> dict[str, dict[str, str]]:
    """Headers that open the restricted APIs, per protocol: {"http": {...}, "grpc": {...}}."""
    return {"http": {ADMIN_HTTP_HEADER: admin_key}, "grpc": {ADMIN_GRPC_HEADER: admin_key}}
