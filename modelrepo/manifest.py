"""manifest.json: one entry per model built into the repository, read and written here only.

    {"format": 1, "models": {"<name>": {<ManifestEntry.to_dict()>}, ...}}

An entry's typed fields are what later stages need (names, task, target, precision, limits,
where the checkpoint was); `evidence` keeps the rest of what the build recorded (fusions,
validation figures, latencies, versions, timings) as it was written.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import RepositoryError
from .names import ModelNames

MANIFEST = "manifest.json"
FORMAT = 1


class Target(StrEnum):
    CPU = "cpu"    # ONNX Runtime inside a Python-backend model (the CPU Triton build has no ORT backend)
    GPU = "gpu"    # the onnxruntime backend with TensorRT / CUDA, and a TensorRT plan


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Task(StrEnum):
    CLASSIFICATION = "text-classification"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    task: Task
    target: Target
    precision: Precision                 # the served one
    max_length: int                      # tokens; longer texts are truncated
    max_batch_size: int
    ensemble: str
    tokenizer: str
    encoder: str
    fused: str | None                    # CPU builds only
    folders: list[str]                   # every model folder the build wrote
    source: str | None = None            # the Hugging Face checkpoint folder it was built from
    head: str | None = None              # its scikit-learn head (classifiers built with one)
    normalize: bool = True
    fingerprint: str = ""                # of the converter code, options and checkpoint (stale check)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    num_labels: int = 0
    evidence: dict[str, Any] = field(default_factory=dict)   # the rest of the build's record

    @property
    def names(self) -> ModelNames:
        return ModelNames(self.ensemble, self.tokenizer, self.encoder, self.fused)

    @property
    def is_classifier(self) -> bool:
        return self.task == Task.CLASSIFICATION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ManifestEntry":
        typed = {f.name for f in fields(cls)} - {"evidence"}
        missing = sorted(name for name in ("name", "task", "target", "precision", "max_length", "max_batch_size",
                                           "ensemble", "tokenizer", "encoder") if name not in data)
        if missing:
            raise RepositoryError(f"manifest entry {data.get('name', '?')} lacks {', '.join(missing)}: "
                                  "rebuild it with `python -m convert`")
        values = {key: value for key, value in data.items() if key in typed}
        values.setdefault("fused", None)
        values.setdefault("folders", [])
        try:
            values |= {"task": Task(data["task"]), "target": Target(data["target"]),
                       "precision": Precision(data["precision"])}
        except ValueError as error:
            raise RepositoryError(f"manifest entry {data['name']}: {error}; "
                                  "rebuild it with `python -m convert`") from None
        return cls(**values, evidence={key: value for key, value in data.items() if key not in typed})

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        data |= {"task": str(self.task), "target": str(self.target), "precision": str(self.precision)}
        return {**data, **self.evidence}


def read_manifest(repository: Path) -> dict[str, ManifestEntry]:
    """Every model the repository's manifest lists (none when it has no manifest)."""
    path = Path(repository) / MANIFEST
    if not path.is_file():
        return {}
    try:
        models = json.loads(path.read_text()).get("models", {})
    except json.JSONDecodeError as error:
        raise RepositoryError(f"{path} is not valid JSON ({error}); rebuild with `python -m convert`") from None
    return {name: ManifestEntry.from_dict(entry) for name, entry in models.items()}


def read_entry(repository: Path, name: str) -> ManifestEntry | None:
    """The entry of `name`; None when the repository has no manifest (built by hand). A manifest
    that lists other models but not this one is an error that names them."""
    entries = read_manifest(repository)
    if entries and name not in entries:
        raise RepositoryError(f"{Path(repository) / MANIFEST} has no model '{name}'; it has {sorted(entries)} "
                              "(use --model)")
    return entries.get(name)


def record_entry(repository: Path, entry: ManifestEntry) -> None:
    """Add or replace one model's entry, atomically (a reader never sees half a manifest)."""
    path = Path(repository) / MANIFEST
    document = json.loads(path.read_text()) if path.is_file() else {"format": FORMAT, "models": {}}
    document["models"][entry.name] = entry.to_dict()
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
