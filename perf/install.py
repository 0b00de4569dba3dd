"""Install perf_analyzer beside the virtual environment, without installing an old client.

perf_analyzer is not on PyPI for this machine's glibc (the `perf-analyzer` wheels need
2.38), but the `tritonclient==2.41.0` wheel carries a build that runs here. We download
that wheel once, take the one binary out of it (installing it would downgrade the
project's tritonclient), and link the two shared libraries it needs from the copies the
nvidia-pytriton wheel already ships under hashed names.

Layout (all inside the venv, so a fresh venv starts clean):
    .venv/perf_analyzer/wheel/tritonclient-2.41.0-*.whl   download cache
    .venv/perf_analyzer/bin/perf_analyzer                 the binary
    .venv/perf_analyzer/lib/libb64.so.0d, libcudart.so.12 symlinks
    .venv/bin/perf_analyzer                               wrapper script for people
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from .errors import PerfError

WHEEL_REQUIREMENT = "tritonclient==2.41.0"
BINARY_IN_WHEEL = "tritonclient-2.41.0.data/data/bin/perf_analyzer"
# Plain name the binary asks for -> prefix of the hashed copy in nvidia_pytriton.libs.
NEEDED_LIBRARIES = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}


class PerfAnalyzerInstallError(PerfError, RuntimeError):
    """perf_analyzer could not be installed; the message says why and what to do."""


def venv_root() -> Path:
    """The virtual environment we run in (sys.prefix), where the install lives."""
    return Path(sys.prefix)


def install_root() -> Path:
    return venv_root() / "perf_analyzer"


def binary_path() -> Path:
    return install_root() / "bin" / "perf_analyzer"


def library_dir() -> Path:
    return install_root() / "lib"


def wrapper_path() -> Path:
    return venv_root() / "bin" / "perf_analyzer"


def is_installed() -> bool:
    """True when the binary and both library links are in place (links must resolve)."""
    links_ok = all((library_dir() / name).exists() for name in NEEDED_LIBRARIES)
    return binary_path().is_file() and os.access(binary_path(), os.X_OK) and links_ok


def install(force: bool = False) -> Path:
    """Install perf_analyzer if needed and return the binary's path. Idempotent, fast when done."""
    if is_installed() and not force:
        _write_wrapper()
        return binary_path()
    wheel = _download_wheel(install_root() / "wheel")
    _extract_binary(wheel, binary_path())
    _link_libraries(_pytriton_libs_dir(), library_dir())
    _write_wrapper()
    _check_it_runs()
    return binary_path()


def perf_analyzer_command() -> tuple[str, dict[str, str]]:
    """(argv0, environment) to run perf_analyzer with.

    $PERF_ANALYZER names a binary explicitly. Otherwise our install is used, made on first
    use; in the NGC SDK image (GPU host), where there is none, the image's own
    perf_analyzer on PATH is used instead of downloading ours.
    """
    env = dict(os.environ)
    explicit = env.get("PERF_ANALYZER")
    if explicit:
        return explicit, env
    on_path = shutil.which("perf_analyzer")
    if not is_installed() and on_path and Path(on_path).resolve() != wrapper_path().resolve():
        return on_path, env
    binary = install()
    existing = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = str(library_dir()) + (os.pathsep + existing if existing else "")
    return str(binary), env


def _download_wheel(cache_dir: Path) -> Path:
    cached = sorted(cache_dir.glob("tritonclient-2.41.0-*.whl"))
    if cached:
        return cached[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps",
               "--only-binary=:all:", "--dest", str(cache_dir), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    cached = sorted(cache_dir.glob("tritonclient-2.41.0-*.whl"))
    if result.returncode != 0 or not cached:
        raise PerfAnalyzerInstallError(
            f"could not download {WHEEL_REQUIREMENT} (needed only for its perf_analyzer binary): "
            f"{result.stderr.strip()[-500:]}\nCheck access to PyPI, or put the wheel in {cache_dir}."
        )
    return cached[0]


def _extract_binary(wheel: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(BINARY_IN_WHEEL)
        except KeyError:
            raise PerfAnalyzerInstallError(
                f"{wheel.name} has no {BINARY_IN_WHEEL}: this platform's wheel carries no "
                "perf_analyzer. Use the NGC Triton SDK image on such hosts."
            ) from None
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)  # atomic: a half-written binary never looks installed


def _pytriton_libs_dir() -> Path:
    import pytriton  # the nvidia-pytriton wheel; its auditwheel libs sit beside the package

    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise PerfAnalyzerInstallError(
            f"{libs} not found: perf_analyzer needs libb64 and libcudart from nvidia-pytriton==0.7.0. "
            "Install the project's requirements.txt first."
        )
    return libs


def _link_libraries(source_dir: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    for plain_name, hashed_prefix in NEEDED_LIBRARIES.items():
        matches = sorted(source_dir.glob(hashed_prefix + "*"))
        if not matches:
            raise PerfAnalyzerInstallError(
                f"no {hashed_prefix}* in {source_dir}; perf_analyzer needs {plain_name}. "
                "Install it from Debian (libb64-0d) or PyPI (nvidia-cuda-runtime-cu12)."
            )
        link = target_dir / plain_name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])


def _write_wrapper() -> None:
    """A `perf_analyzer` on the venv's PATH for people; the tools use perf_analyzer_command()."""
    script = (
        "#!/bin/sh\n"
        "# Written by `python -m perf install`: runs the perf_analyzer taken from tritonclient 2.41.0.\n"
        f'LD_LIBRARY_PATH="{library_dir()}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
        f'exec "{binary_path()}" "$@"\n'
    )
    wrapper = wrapper_path()
    if wrapper.is_file() and wrapper.read_text() == script:
        return
    wrapper.write_text(script)
    wrapper.chmod(0o755)


def perf_analyzer_version() -> str:
    """'Perf Analyzer Version 2.41.0 (commit ...)', for the results' machine description."""
    argv0, env = perf_analyzer_command()
    result = subprocess.run([argv0, "--version"], capture_output=True, text=True, env=env)
    return (result.stdout or result.stderr).strip()


def _check_it_runs() -> None:
    env = dict(os.environ, LD_LIBRARY_PATH=str(library_dir()))
    result = subprocess.run([str(binary_path()), "--version"], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise PerfAnalyzerInstallError(
            f"{binary_path()} does not start (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )
