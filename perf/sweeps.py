"""Sweep definitions: load a preset YAML from perf/sweeps/ and expand it into runs.

A sweep file holds measurement settings and a list of grids. Each grid names values for
some dimensions; every combination of them is one run (one perf_analyzer call, or one
baseline measurement). See perf/sweeps/quick.yaml for a commented example.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PerfError

SWEEPS_DIR = Path(__file__).resolve().parent / "sweeps"

# triton-echo: a Python-backend model that does no work (perf/echo.py): what a request to one costs.
TRITON_RUNTIMES = ("triton-ensemble", "triton-fused", "triton-encoder", "triton-echo")
INPROCESS_RUNTIMES = ("onnxruntime", "pytorch")
HTTP_RUNTIMES = ("fastapi",)
RUNTIMES = TRITON_RUNTIMES + INPROCESS_RUNTIMES + HTTP_RUNTIMES

# Dimensions a grid may name, and the value a run gets when its grid leaves one out.
DEFAULTS: dict[str, Any] = {
    "seq_len": 16,
    "batch_size": 1,
    "concurrency": 1,
    "protocol": "grpc",
    "shared_memory": "none",
    "dynamic_batching": "on",
}
ALLOWED = {
    "protocol": {"grpc", "http"},
    "shared_memory": {"none", "system", "cuda"},
    "dynamic_batching": {"on", "off"},
}


class SweepError(PerfError, ValueError):
    """A sweep file is malformed; the message names the file, the grid and the field."""


@dataclass(frozen=True)
class RunSpec:
    """One measurement: which runtime, with what input shape and load."""

    runtime: str
    seq_len: int
    batch_size: int
    concurrency: int
    protocol: str  # grpc | http for Triton, "http" for fastapi, "inprocess" for in-process baselines
    shared_memory: str
    dynamic_batching: str  # on | off (off: a copy of the repository without it); n/a for baselines

    @property
    def key(self) -> str:
        """Short unique name, used for raw output files and progress lines."""
        parts = [self.runtime, self.protocol, f"s{self.seq_len}", f"b{self.batch_size}", f"c{self.concurrency}"]
        if self.shared_memory != "none":
            parts.append(f"shm-{self.shared_memory}")
        if self.dynamic_batching == "off":
            parts.append("nodb")
        return "_".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeasurementSettings:
    """How long and how strictly each run measures."""

    interval_ms: int = 2000  # perf_analyzer --measurement-interval
    stability_percentage: int = 25  # settles on this shared 2-core machine (ENVIRONMENT.md)
    max_trials: int = 15
    percentile: int | None = None  # stabilise on this percentile instead of the average
    baseline_seconds: float = 3.0  # per baseline run, after warm-up
    warmup_requests: int = 10
    texts_per_length: int = 64


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    measurement: MeasurementSettings
    runs: list[RunSpec] = field(default_factory=list)


def preset_path(name_or_path: str) -> Path:
    """A preset name (quick, full, gpu-t4) or a path to a sweep file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    preset = SWEEPS_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise SweepError(f"no sweep preset '{name_or_path}'; known presets: {known}, or give a path to a .yaml file")
    return preset


def load_sweep(name_or_path: str) -> Sweep:
    path = preset_path(name_or_path)
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document.get("runs"), list) or not document["runs"]:
        raise SweepError(f"{path}: needs a non-empty 'runs:' list of grids")
    measurement = _measurement(path, document.get("measurement") or {})
    runs: list[RunSpec] = []
    for index, grid in enumerate(document["runs"]):
        for spec in expand_grid(grid, where=f"{path.name} runs[{index}]"):
            if spec not in runs:  # grids may overlap; measure each configuration once
                runs.append(spec)
    return Sweep(document.get("name", path.stem), document.get("description", ""), measurement, runs)


def _measurement(path: Path, section: dict) -> MeasurementSettings:
    known = MeasurementSettings.__dataclass_fields__
    unknown = set(section) - set(known)
    if unknown:
        raise SweepError(f"{path}: unknown measurement settings {sorted(unknown)}; known: {sorted(known)}")
    return MeasurementSettings(**section)


def expand_grid(grid: dict, where: str) -> list[RunSpec]:
    """Every combination of the grid's values, as RunSpecs, checked for sense."""
    if not isinstance(grid, dict) or "runtime" not in grid:
        raise SweepError(f"{where}: each grid needs a 'runtime' (one or a list of {list(RUNTIMES)})")
    unknown = set(grid) - set(DEFAULTS) - {"runtime"}
    if unknown:
        raise SweepError(f"{where}: unknown dimensions {sorted(unknown)}; known: runtime, {', '.join(DEFAULTS)}")
    names = ["runtime", *DEFAULTS]
    value_lists = [_as_list(grid.get(name, DEFAULTS.get(name))) for name in names]
    specs = []
    for values in itertools.product(*value_lists):
        spec = _normalise(dict(zip(names, values)), where)
        if spec not in specs:
            specs.append(spec)
    return specs


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _normalise(values: dict[str, Any], where: str) -> RunSpec:
    runtime = values["runtime"]
    if isinstance(values["dynamic_batching"], bool):  # YAML 1.1 reads a bare on/off as a boolean
        values["dynamic_batching"] = "on" if values["dynamic_batching"] else "off"
    if runtime not in RUNTIMES:
        raise SweepError(f"{where}: unknown runtime '{runtime}'; choose from {list(RUNTIMES)}")
    for name, allowed in ALLOWED.items():
        if str(values[name]) not in allowed:
            raise SweepError(f"{where}: {name}={values[name]!r} is not one of {sorted(allowed)}")
    for name in ("seq_len", "batch_size", "concurrency"):
        if not isinstance(values[name], int) or values[name] < 1:
            raise SweepError(f"{where}: {name} must be a positive integer, got {values[name]!r}")
    if runtime in TRITON_RUNTIMES:
        return RunSpec(runtime, values["seq_len"], values["batch_size"], values["concurrency"],
                       values["protocol"], values["shared_memory"], str(values["dynamic_batching"]))
    if runtime in INPROCESS_RUNTIMES and values["concurrency"] != 1:
        raise SweepError(f"{where}: {runtime} runs in-process, one call at a time: concurrency must be 1")
    # Triton's dimensions mean nothing to the baselines: pin them so specs deduplicate.
    protocol = "http" if runtime in HTTP_RUNTIMES else "inprocess"
    return RunSpec(runtime, values["seq_len"], values["batch_size"], values["concurrency"], protocol, "none", "n/a")
