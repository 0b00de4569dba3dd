"""Label and score outputs appended to a classifier graph, so no Python runs after the encoder.

`label` (string, via ai.onnx.ml LabelEncoder) and `score` are the top-1 class and its
probability; `probabilities` stays for top-k through Triton's classification extension.
This runs on every variant after optimisation and quantisation, which leave it alone.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

ML_DOMAIN = "ai.onnx.ml"


def _ensure_ml_opset(model: onnx.ModelProto) -> None:
    if not any(op.domain == ML_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ML_DOMAIN, 2))


def add_label_outputs(source: Path, target: Path, labels: list[str]) -> Path:
    model = onnx.load(str(source))
    _ensure_ml_opset(model)
    graph = model.graph
    graph.node.extend([
        helper.make_node("ArgMax", ["probabilities"], ["label_index"], axis=-1, keepdims=1, name="top1_index"),
        helper.make_node("ReduceMax", ["probabilities"], ["score"], axes=[-1], keepdims=1, name="top1_score"),
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
