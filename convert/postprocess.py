"""Label and score outputs appended to a classifier graph, so no Python runs after the encoder.

`label` (string, via ai.onnx.ml LabelEncoder) and `score` are the top-1 class and its
probability; `probabilities` stays for top-k through Triton's classification extension.
This runs on every variant after optimisation and quantisation, which leave it alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .token_int8 import opset_of

ML_DOMAIN = "ai.onnx.ml"


def _ensure_ml_opset(model: onnx.ModelProto) -> None:
    if not any(op.domain == ML_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ML_DOMAIN, 2))


def _reduce_max_last_axis(model: onnx.ModelProto, source: str, target: str) -> onnx.NodeProto:
    """ReduceMax takes its axes as an attribute up to opset 17 and as an input from 18 (the
    INT8 graphs with per-token scales are at opset 21)."""
    if opset_of(model) < 18:
        return helper.make_node("ReduceMax", [source], [target], axes=[-1], keepdims=1, name="top1_score")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), "top1_score_axes"))
    return helper.make_node("ReduceMax", [source, "top1_score_axes"], [target], keepdims=1, name="top1_score")


def add_label_outputs(source: Path, target: Path, labels: list[str]) -> Path:
    model = onnx.load(str(source))
    _ensure_ml_opset(model)
    graph = model.graph
    graph.node.extend([
        helper.make_node("ArgMax", ["probabilities"], ["label_index"], axis=-1, keepdims=1, name="top1_index"),
        _reduce_max_last_axis(model, "probabilities", "score"),
        helper.make_node("LabelEncoder", ["label_index"], ["label"], domain=ML_DOMAIN, name="top1_label",
                         keys_int64s=list(range(len(labels))), values_strings=labels, default_string=""),
    ])
    graph.output.extend([
        helper.make_tensor_value_info("label", onnx.TensorProto.STRING, ["batch", 1]),
        helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, ["batch", 1]),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target
