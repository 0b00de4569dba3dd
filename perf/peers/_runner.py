"""Run one in-process peer inside the peers venv and print its results as one JSON line.

    .venv/peers/bin/python perf/peers/_runner.py < job.json

The job names the peer (st-torch, st-onnx, fastembed) or `export` (write the ONNX folder the
ONNX peers load), the model folders, the check texts, the reference embeddings (none for the
reference itself) and the measurement settings. The peer embeds the check texts first; only
when they agree with the reference is its speed measured. Progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # check.py and measure.py, run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import check  # noqa: E402
import measure  # noqa: E402

FASTEMBED_NAME = "local/minilm-embed-peer"  # a name of our own: fastembed's registry must not match it


def main() -> int:
    job = json.loads(sys.stdin.read())
    if job["peer"] == "export":
        print(json.dumps(export_onnx(Path(job["checkpoint"]), Path(job["onnx_folder"]))))
        return 0
    started = time.perf_counter()
    embed = load_peer(job)
    loaded_s = time.perf_counter() - started
    embeddings = [list(map(float, row)) for row in embed(job["check_texts"])]
    result: dict[str, Any] = {"peer": job["peer"], "load_s": round(loaded_s, 2), "versions": versions()}
    if job.get("reference") is None:
        result["embeddings"] = embeddings  # this peer is the reference
        result["check"] = {"ok": True, "reference": True}
    else:
        result["check"] = check.cosine_check(job["reference"], embeddings)
    if result["check"]["ok"]:
        texts = {int(length): texts for length, texts in job["texts"].items()}
        result["rows"] = measure.measure_all(lambda: embed, texts, job["seconds"], job["warmup_requests"],
                                             job["scenarios"], progress=_progress(job["peer"]))
    print(json.dumps(result))
    return 0


def load_peer(job: dict[str, Any]) -> Callable[[list[str]], Any]:
    """A function texts -> embeddings [n, 384] for the named peer, from local folders only."""
    peer = job["peer"]
    if peer in ("st-torch", "st-onnx"):
        from sentence_transformers import SentenceTransformer

        folder = job["checkpoint"] if peer == "st-torch" else job["onnx_folder"]
        model = SentenceTransformer(folder, device="cpu", backend="torch" if peer == "st-torch" else "onnx")
        return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True)
    if peer == "fastembed":
        return _fastembed(Path(job["onnx_folder"]))
    raise SystemExit(f"unknown peer {peer!r}: st-torch, st-onnx, fastembed or export")


def _fastembed(onnx_folder: Path) -> Callable[[list[str]], Any]:
    import numpy as np
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    TextEmbedding.add_custom_model(model=FASTEMBED_NAME, pooling=PoolingType.MEAN, normalization=True,
                                   sources=ModelSource(hf=FASTEMBED_NAME), dim=384, model_file="onnx/model.onnx")
    model = TextEmbedding(model_name=FASTEMBED_NAME, specific_model_path=str(onnx_folder), local_files_only=True)
    return lambda texts: np.stack(list(model.embed(texts, batch_size=32)))


def export_onnx(checkpoint: Path, onnx_folder: Path) -> dict[str, Any]:
    """sentence-transformers' own ONNX export (through optimum) of the checkpoint, saved as a
    sentence-transformers folder (onnx/model.onnx beside the tokenizer and pooling config)."""
    from sentence_transformers import SentenceTransformer

    if not (onnx_folder / "onnx" / "model.onnx").is_file():
        SentenceTransformer(str(checkpoint), device="cpu", backend="onnx").save(str(onnx_folder))
    return {"onnx_folder": str(onnx_folder), "versions": versions()}


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for package in ("infinity-emb", "sentence-transformers", "fastembed", "optimum", "onnxruntime",
                    "torch", "transformers", "tokenizers", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _progress(peer: str) -> Callable[[str], None]:
    return lambda line: print(f"{peer:<12} {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
