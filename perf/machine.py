"""Describe the machine a benchmark ran on, so a results file stands on its own."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("onnxruntime", "onnxruntime-gpu", "torch", "transformers", "tokenizers", "numpy",
            "scikit-learn", "tritonclient", "nvidia-pytriton", "fastapi", "uvicorn")


def describe_machine() -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cpu_int8": _int8_instructions(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": _package_versions(),
    }


def one_line(machine: dict) -> str:
    """'AMD EPYC, 2 cores, no GPU' for report headers."""
    gpus = ", ".join(gpu["name"] for gpu in machine.get("gpus", [])) or "no GPU"
    int8 = f" ({machine['cpu_int8']})" if machine.get("cpu_int8") else ""
    return f"{machine.get('cpu_model', '?')}{int8}, {machine.get('cpus_usable', '?')} cores, {gpus}"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The instructions ONNX Runtime's INT8 kernels use, best first: which one a CPU has decides
# how fast INT8 runs and how much of a model can be INT8 (convert/mixed_precision.py).
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx2")


def _int8_instructions() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    return next((flag for flag in _INT8_FLAGS if flag in flags), "no AVX2")


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _gpus() -> list[dict]:
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        lines = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in lines:
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def _package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
