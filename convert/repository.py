"""Step 7-8: lay out the Triton model repository and move it into place atomically.

A build writes every folder of one model (tokenizer, encoder(s), ensemble) into a
staging folder beside the output, and only after validation passed swaps them in and
records the model in manifest.json (through modelrepo, the repository's contract). A
failed build never touches the repository that was there.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._modelrepo import ManifestEntry, record_entry, write_config
from .errors import ConvertError

PYTHON_MODELS = Path(__file__).with_name("python_models")


@dataclass(frozen=True)
class ModelFolder:
    """One Triton model folder: its config, and files to place under it (relative path -> source)."""
    name: str
    config: object                 # tritonclient.grpc.model_config_pb2.ModelConfig
    files: dict[str, Path]
    contents: dict[str, bytes]     # relative path -> bytes written as is


def python_model_source(kind: str) -> Path:
    return PYTHON_MODELS / {"tokenizer": "tokenizer_model.py", "onnx_encoder": "onnx_encoder_model.py",
                            "text_encoder": "text_encoder_model.py"}[kind]


def string_tensor_bytes(texts: list[str]) -> bytes:
    """Triton's serialisation of a BYTES tensor: each item as a 4-byte length + UTF-8."""
    out = b""
    for text in texts:
        raw = text.encode("utf-8")
        out += struct.pack("<I", len(raw)) + raw
    return out


def int64_tensor_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def check_writable(out: Path) -> None:
    """Fail before any heavy work if the output cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}-probe-"):
            pass
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as error:
        raise ConvertError(f"cannot write the model repository {out}: {error.strerror}; choose another --out") from None


def stage_folders(folders: list[ModelFolder], out: Path) -> Path:
    """Write the folders into a fresh staging directory next to `out` (same filesystem)."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-staging-"))
    for folder in folders:
        model_dir = staging / folder.name
        model_dir.mkdir()
        write_config(folder.config, model_dir)
        for relative, source in folder.files.items():
            (model_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, model_dir / relative)
        for relative, data in folder.contents.items():
            (model_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (model_dir / relative).write_bytes(data)
    return staging


def install(staging: Path, out: Path, entry: ManifestEntry, stale_folders: list[str]) -> None:
    """Swap the staged folders in (each by rename), drop folders the new build no longer
    has, and record the model in manifest.json."""
    retired = staging / ".retired"
    retired.mkdir()
    for folder in stale_folders:
        if (out / folder).exists():
            os.replace(out / folder, retired / folder)
    for model_dir in sorted(p for p in staging.iterdir() if not p.name.startswith(".")):
        target = out / model_dir.name
        if target.exists():
            os.replace(target, retired / model_dir.name)
        os.replace(model_dir, target)
    record_entry(out, entry)
    shutil.rmtree(staging)
