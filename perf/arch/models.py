"""What the study measures of each architecture before timing it: the build, the INT8 graph
and the summary row (parameters, ONNX sizes, fused nodes, INT8 scheme and gate).

INT8 for random weights: a gate or a sensitivity search graded against a random network's
outputs says nothing about a trained one, so no search is run and the graph is full dynamic
INT8 (per-channel weights, as the build's INT8 starts from): the fastest INT8 the build
could choose, an upper bound of what INT8 saves. MiniLM gets the INT8 its own gated build chose.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._modelrepo import ModelNames, read_manifest
from .configs import Architecture, checkpoint, parameter_count, repository
from .runtimes import ModelPaths

NOT_APPLICABLE = "not applicable (random weights)"


@dataclass(frozen=True)
class PreparedModel:
    arch: Architecture
    repository: Path          # the FP32 build that Triton serves
    paths: ModelPaths
    summary: dict


def prepare(arch: Architecture, cache: Path) -> PreparedModel:
    """Checkpoint, FP32 build, INT8 graph and summary of `arch`, reusing what `cache` holds."""
    folder = checkpoint(arch, cache)
    fp32_repo = repository(arch, cache, "fp32")
    names = ModelNames.of(arch.key)
    fp32_onnx = names.onnx_file(fp32_repo)
    int8_onnx, int8 = real_int8(arch, cache) if arch.real_weights else full_int8(arch, fp32_onnx, cache)
    paths = ModelPaths(folder, fp32_onnx, int8_onnx, names.tokenizer_json(fp32_repo))
    entry = read_manifest(fp32_repo)[arch.key].to_dict()
    fusion = entry.get("fusion", {})
    summary = {
        "architecture": arch.key, "title": arch.title, "weights": arch.label, "model_type": arch.model_type,
        "layers": arch.layers, "hidden": arch.hidden, "parameters": parameter_count(folder),
        "onnx_fp32_mb": _megabytes(fp32_onnx), "onnx_int8_mb": _megabytes(int8_onnx),
        "nodes_before": fusion.get("nodes_before"), "nodes_after": fusion.get("nodes_after"),
        "fused": {op: n for op, n in fusion.get("fused", {}).items() if n},
        "attention_fused": fusion.get("attention_fused"),
        "fp32_gate": "passed" if all(r["passed"] for r in entry.get("validation", [])) else "failed",
        "build_seconds": round(sum(entry.get("build_seconds", {}).values()), 1),
        **int8,
    }
    return PreparedModel(arch, fp32_repo, paths, summary)


def _megabytes(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def full_int8(arch: Architecture, fp32_onnx: Path, cache: Path) -> tuple[Path, dict]:
    """Every operator ONNX Runtime quantises, in dynamic INT8; made once per FP32 graph."""
    from convert.optimize import quantize_int8

    target = cache / "int8" / f"{arch.key}.onnx"
    if not target.is_file() or target.stat().st_mtime < fp32_onnx.stat().st_mtime:
        target.parent.mkdir(parents=True, exist_ok=True)
        quantize_int8(fp32_onnx, target)
    return target, {"int8_scheme": "full dynamic INT8, per-channel (no search: random weights)",
                    "int8_gate": NOT_APPLICABLE}


def real_int8(arch: Architecture, cache: Path) -> tuple[Path, dict]:
    """The INT8 graph the gated build chose (sensitivity search, held-out gate), and what it chose."""
    int8_repo = repository(arch, cache, "int8")
    entry = read_manifest(int8_repo)[arch.key].to_dict()
    choice = entry.get("int8_choice", {})
    kept, units = choice.get("fp32_nodes", []), choice.get("search", {}).get("units")
    if str(entry.get("precision")) != "int8":
        raise RuntimeError(f"{arch.key}: no INT8 variant passed the gate ({entry.get('int8_rejected')}); "
                           "the study needs the gated INT8 graph of the real model")
    held = choice.get("held_out", {})
    scheme = f"mixed INT8: {len(kept)} of {units} units kept FP32 (the build's search)" if kept else "full dynamic INT8"
    gate = f"passed (held-out min cosine {held['cosine_min']:.3f})" if "cosine_min" in held else "passed"
    return ModelNames.of(arch.key).onnx_file(int8_repo), {"int8_scheme": scheme, "int8_gate": gate}
