"""Dynamic INT8 MatMuls with one activation scale per token instead of one per tensor.

ONNX Runtime's dynamic quantisation (DynamicQuantizeLinear) scales a whole activation tensor
by its largest value. In BERT-like encoders a few tokens ([CLS], [SEP], punctuation) carry
activations tens of times larger than the rest, so every other token is quantised with a
coarse step. Scaling each token (row) by its own largest value (the "token-wise" scheme of
ZeroQuant, Yao et al. 2022) cuts MiniLM's INT8 error about threefold at nearly the same
speed, and each token's result no longer depends on the other rows of the batch.

ONNX Runtime has no per-token dynamic quantiser, so this writes the MatMul from standard
operators and ONNX Runtime's MatMulIntegerToFloat:

    scale = max(|x|, over the row) / 127                   one per token
    x_q   = QuantizeLinear(x, scale, 128)  (uint8)          blocked quantisation, opset 21
    y     = MatMulIntegerToFloat(x_q, W_q, 1, w_scale, 128) * scale

with W_q the weight in int8, symmetric, one scale per output column (as the per-channel
dynamic scheme). uint8 activations with zero point 128 (rather than int8) because MLAS's
fast kernels are u8 x s8; int8 x int8 fell back to a path 15x slower on an AVX-512 VNNI EPYC.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

OPSET = 21   # QuantizeLinear with block_size (one scale per row) is opset 21


def upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph at opset 21 (ONNX's converter rewrites what changed, e.g. the Reduce
    operators' axes attribute into an input). Contrib operators are left as they are."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    return model if current >= OPSET else version_converter.convert_version(model, OPSET)


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one scale per output column (range -127..127, as per-channel
    dynamic INT8 does, so the two schemes differ only in the activations)."""
    scale = np.maximum(np.abs(weight).max(axis=0), np.finfo(np.float32).tiny) / 127.0
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def token_matmul(node: onnx.NodeProto, weight: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initialisers that compute node's output, x @ weight, with x scaled per token."""
    x, (y,) = node.input[0], node.output
    p = f"{node.name}_token_int8"
    quantized, column_scale = quantize_weight(weight)
    constants = [numpy_helper.from_array(quantized, f"{p}_weight"),
                 numpy_helper.from_array(column_scale, f"{p}_weight_scale"),
                 numpy_helper.from_array(np.array([-1], np.int64), f"{p}_last_axis"),
                 numpy_helper.from_array(np.array(1e-12, np.float32), f"{p}_smallest"),
                 numpy_helper.from_array(np.array(1 / 127.0, np.float32), f"{p}_one_127th"),
                 numpy_helper.from_array(np.array([[[128]]], np.uint8), f"{p}_zero_point_block"),
                 numpy_helper.from_array(np.array(128, np.uint8), f"{p}_zero_point"),
                 numpy_helper.from_array(np.array(1.0, np.float32), f"{p}_one")]

    def make(op: str, inputs: list[str], output: str, domain: str = "", **attributes) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=f"{p}_{op}_{output.rsplit('_', 1)[-1]}",
                                domain=domain, **attributes)

    nodes = [
        make("Abs", [x], f"{p}_abs"),
        make("ReduceMax", [f"{p}_abs", f"{p}_last_axis"], f"{p}_rowmax", keepdims=1),
        make("Max", [f"{p}_rowmax", f"{p}_smallest"], f"{p}_rowmaxpos"),     # an all-zero row
        make("Mul", [f"{p}_rowmaxpos", f"{p}_one_127th"], f"{p}_rowscale"),
        make("Shape", [f"{p}_rowscale"], f"{p}_scaleshape"),
        make("Expand", [f"{p}_zero_point_block", f"{p}_scaleshape"], f"{p}_rowzero"),
        make("QuantizeLinear", [x, f"{p}_rowscale", f"{p}_rowzero"], f"{p}_xq", axis=-1,
             block_size=weight.shape[0]),
        make("MatMulIntegerToFloat", [f"{p}_xq", f"{p}_weight", f"{p}_one", f"{p}_weight_scale", f"{p}_zero_point"],
             f"{p}_columns", domain="com.microsoft"),
        helper.make_node("Mul", [f"{p}_columns", f"{p}_rowscale"], [y], name=f"{p}_Mul_rows"),
    ]
    return nodes, constants


def token_matmuls(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of the (opset 21) model with the named MatMuls, each with a constant 2-D weight,
    replaced by their per-token INT8 form; their FP32 weights are dropped once unused."""
    names = set(names)
    weights = {t.name: t for t in model.graph.initializer}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    nodes, added, replaced = [], [], set()
    for node in model.graph.node:
        if node.name in names:
            weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
            if weight is None or len(weight.dims) != 2:
                raise ValueError(f"{node.name} is not a MatMul with a constant 2-D weight: it has no per-token form")
            parts, constants = token_matmul(node, numpy_helper.to_array(weight))
            nodes += parts
            added += constants
            replaced.add(node.name)
        else:
            nodes.append(node)
    missing = names - replaced
    if missing:
        raise ValueError(f"no such nodes in the graph: {sorted(missing)}")
    used = {name for node in nodes for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(kept + added)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def is_token_matmul_candidate(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    return node.op_type == "MatMul" and node.input[1] in weights and len(weights[node.input[1]].dims) == 2

