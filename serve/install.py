"""Put the tritonserver shipped in the nvidia-pytriton wheel where it can run.

The wheel carries a real Triton 2.51 build under `site-packages/pytriton/tritonserver/`
(bin/, backends/python/, caches/local/) plus one Python-backend stub per Python version
under `python_backend_stubs/3.X/`. The Python backend looks for its stub in its own
folder, so we copy the tree once to `.venv/tritonserver/` (beside the venv, so a fresh
venv starts clean) and put the stub matching the running Python into
`backends/python/`. The shared libraries stay where the wheel put them
(`site-packages/nvidia_pytriton.libs`); the launcher points LD_LIBRARY_PATH there
because the binaries' RPATH is relative to their original place.

Layout:
    .venv/tritonserver/bin/tritonserver
    .venv/tritonserver/backends/python/{libtriton_python.so, triton_python_backend_stub, ...}
    .venv/tritonserver/caches/local/libtritoncache_local.so
    .venv/tritonserver/.installed        written last: what was copied, from where
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import ServerStartError

WHEEL = "nvidia-pytriton"
STAMP = ".installed"
STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    """Paths of an installed tree, everything the launcher needs to start the binary."""
    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def backend_directory(self) -> Path:
        return self.root / "backends"

    @property
    def cache_directory(self) -> Path:
        return self.root / "caches"

    @property
    def stub(self) -> Path:
        return self.backend_directory / "python" / STUB_NAME


def default_target() -> Path:
    """`<venv>/tritonserver`: sys.prefix is the venv we run in."""
    return Path(sys.prefix) / "tritonserver"


def wheel_tree() -> Path:
    """`site-packages/pytriton/tritonserver` of the installed nvidia-pytriton wheel."""
    tree = _pytriton_package_dir() / "tritonserver"
    if not (tree / "bin" / "tritonserver").is_file():
        raise ServerStartError(
            f"{tree}/bin/tritonserver not found: this nvidia-pytriton install carries no server. "
            "Reinstall it with `pip install --force-reinstall nvidia-pytriton==0.7.0`."
        )
    return tree


def wheel_libraries() -> Path:
    """`site-packages/nvidia_pytriton.libs`: the server's shared libraries (hashed names)."""
    libs = _pytriton_package_dir().parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise ServerStartError(
            f"{libs} not found: tritonserver cannot load its libraries. "
            "Reinstall with `pip install --force-reinstall nvidia-pytriton==0.7.0`."
        )
    return libs


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def install(target: Path | None = None, force: bool = False) -> TritonInstall:
    """Copy the server tree and this Python's stub to `target` once; fast when already done.

    Safe to call from several processes at once (tests run in parallel): a file lock
    serialises the copy, and the stamp is written last so a half-copied tree never
    counts as installed.
    """
    installed = TritonInstall(target or default_target())
    wanted = _stamp_contents()
    if not force and _read_stamp(installed.root) == wanted:
        return installed
    installed.root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = installed.root.with_name(installed.root.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if force or _read_stamp(installed.root) != wanted:
            _copy_tree(installed, wanted)
    return installed


def _copy_tree(installed: TritonInstall, stamp: dict[str, str]) -> None:
    stub_source = wheel_tree() / "python_backend_stubs" / python_version() / STUB_NAME
    if not stub_source.is_file():
        raise ServerStartError(
            f"nvidia-pytriton has no Python-backend stub for Python {python_version()} "
            f"({stub_source} missing). Use a Python it ships stubs for (3.8 to 3.13)."
        )
    if installed.root.exists():
        shutil.rmtree(installed.root)  # stale: another wheel version or Python
    shutil.copytree(
        wheel_tree(), installed.root,
        ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
    )
    shutil.copy2(stub_source, installed.stub)
    for executable in (installed.binary, installed.stub):
        executable.chmod(0o755)  # wheels do not always keep the executable bit
    (installed.root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


def _stamp_contents() -> dict[str, str]:
    return {
        "wheel": f"{WHEEL}=={metadata.version(WHEEL)}",
        "python": python_version(),
        "source": str(_pytriton_package_dir() / "tritonserver"),
    }


def _read_stamp(root: Path) -> dict[str, str] | None:
    try:
        return json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _pytriton_package_dir() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerStartError(
            "nvidia-pytriton is not installed; it carries the tritonserver binary. "
            "Run `pip install -r requirements.txt` (it pins nvidia-pytriton==0.7.0)."
        ) from None
    return Path(pytriton.__file__).resolve().parent
