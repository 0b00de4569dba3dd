"""Steps 2-4: symbolic shape inference, ONNX Runtime's transformer fusions, precision variants."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import onnx

from . import token_int8
from .errors import ConvertError

# Fused operators the BERT optimizer produces; attention is the one that matters most.
FUSED_OPERATORS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
                   "BiasGelu", "FastGelu", "Gelu", "LayerNormalization", "SkipSimplifiedLayerNormalization")


@dataclass(frozen=True)
class FusionReport:
    nodes_before: int
    nodes_after: int
    fused: dict[str, int]          # fused operator -> count in the optimised graph
    attention_fused: bool
    embeddings_fused: bool = True  # word + position (+ token type) embeddings and their LayerNorm in one op

    def describe(self) -> str:
        ops = ", ".join(f"{op} {n}" for op, n in self.fused.items() if n)
        state = "attention fused" if self.attention_fused else "ATTENTION NOT FUSED"
        embeddings = "embeddings fused" if self.embeddings_fused else "embeddings not fused"
        return f"{self.nodes_before} -> {self.nodes_after} nodes; {ops}; {state}; {embeddings}"


def infer_shapes(source: Path, target: Path) -> Path:
    """Symbolic shape inference names every dynamic dimension, which the fusions rely on."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(source))
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    if inferred is None:
        raise ConvertError(f"symbolic shape inference failed on {source}")
    onnx.save(inferred, str(target))
    return target


def optimize_transformer(source: Path, target: Path, *, num_heads: int, hidden_size: int,
                         model_type: str = "bert", use_gpu: bool = False) -> FusionReport:
    """Fuse attention, layer norms and GELU with ONNX Runtime's offline transformer optimizer.

    Its "bert" model type is the one for every encoder here (BERT, DistilBERT, ELECTRA,
    RoBERTa, XLM-R): the optimizer has no other for them. It fuses RoBERTa's and XLM-R's
    attention but not their embeddings: EmbedLayerNormalization numbers positions from 0,
    theirs start after the pad id (onnxruntime/transformers/fusion_embedlayer.py leaves
    that matcher disabled), so the embedding sum and its LayerNormalization stay apart."""
    from onnxruntime.transformers.optimizer import optimize_model

    nodes_before = len(onnx.load(str(source)).graph.node)
    # opt_level 0: only the transformer fusions offline; the session applies its own
    # graph optimisations at load time for the hardware it runs on.
    optimized = optimize_model(str(source), model_type=model_type, num_heads=num_heads,
                               hidden_size=hidden_size, opt_level=0, use_gpu=use_gpu)
    optimized.save_model_to_file(str(target))
    ops = Counter(node.op_type for node in optimized.model.graph.node)
    fused = {op: ops.get(op, 0) for op in FUSED_OPERATORS}
    attention = fused["Attention"] + fused["MultiHeadAttention"]
    return FusionReport(nodes_before=nodes_before, nodes_after=len(optimized.model.graph.node),
                        fused=fused, attention_fused=attention > 0,
                        embeddings_fused=fused["EmbedLayerNormalization"] > 0)


def convert_fp16(source: Path, target: Path) -> Path:
    """FP16 weights and activations for GPUs, inputs and outputs kept FP32.

    Ops that overflow or lose too much in FP16 stay FP32: normalisations, softmax,
    powers and reductions (the pooling and L2 normalisation).
    """
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(source)))
    keep_fp32 = ["LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization", "Softmax",
                 "Pow", "ReduceMean", "ReduceSum", "ReduceL2", "Sqrt", "Div"]
    model.convert_float_to_float16(keep_io_types=True, op_block_list=keep_fp32)
    _drop_duplicate_nodes(model.model.graph)
    model.save_model_to_file(str(target))
    return target


def _drop_duplicate_nodes(graph: onnx.GraphProto) -> None:
    """The FP16 converter casts an initializer shared by several FP32-kept nodes once per
    consumer, under one name; the copies are identical, so keep the first."""
    seen, unique = set(), []
    for node in graph.node:
        key = node.SerializeToString()
        if key not in seen:
            seen.add(key)
            unique.append(node)
    if len(unique) != len(graph.node):
        del graph.node[:]
        graph.node.extend(unique)


class ActivationScales(StrEnum):
    """How dynamic INT8 scales activations: ONNX Runtime's one scale per tensor, or one per
    token, after channel smoothing, for the MatMuls and Attentions (convert/token_int8.py)."""
    TENSOR = "tensor"
    TOKEN = "token"


def quantize_int8(source: Path, target: Path, keep_fp32: Sequence[str] = (),
                  scales: ActivationScales = ActivationScales.TENSOR,
                  smoothing: token_int8.Smoothing | None = None) -> Path:
    """Dynamic INT8 with per-channel weight scales (per-tensor scales hurt MiniLM badly) of every
    operator ONNX Runtime can quantise, except the head and the nodes named in keep_fp32
    (convert/mixed_precision.py chooses them). With token scales the MatMuls and Attentions
    get one activation scale per token (smoothed when given calibration figures) and the
    graph moves to opset 21; ONNX Runtime quantises the rest (the embeddings)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    excluded = head_nodes(model) + list(keep_fp32)
    if scales == ActivationScales.TOKEN:
        # per-token units first, then ONNX Runtime quantises what is left (the embeddings)
        model = token_int8.upgrade_opset(model)
        model = token_int8.quantize_units(model, token_int8.units(model, exclude=excluded), smoothing)
        source = target.with_name(f"{target.stem}-token-units.onnx")
        onnx.save(model, str(source))
    # Dynamic quantisation first rewrites each Gemm as "<name>_MatMul" + "<name>_Add" and then
    # matches nodes_to_exclude against the new names.
    gemms = {node.name for node in model.graph.node if node.op_type == "Gemm"}
    excluded += [f"{name}_MatMul" for name in excluded if name in gemms]
    try:
        with _advice_dropped(_QUANTIZER_ADVICE[:1] if scales == ActivationScales.TENSOR else _QUANTIZER_ADVICE):
            quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        if scales == ActivationScales.TOKEN:
            source.unlink(missing_ok=True)
    return target


# Advice quantize_dynamic logs that does not apply here: the graph comes from the transformer
# optimizer (its own pre-processing), and with token scales the per-token units are already
# quantised on purpose (with per-tensor scales that second warning would mean something).
_QUANTIZER_ADVICE = ("Please consider to run pre-processing before quantization",
                     "Please check if the model is already quantized")


@contextmanager
def _advice_dropped(messages: tuple[str, ...]):
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(messages)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes whose weight shape no other node has: the head. It
    costs nothing to run in FP32 and its INT8 error lands directly on the logits. The rule
    holds for BERT, DistilBERT and MiniLM whatever their node names (every encoder layer
    repeats its shapes)."""
    shapes = {init.name: tuple(sorted(init.dims)) for init in model.graph.initializer}
    linear = [(node.name, shapes.get(node.input[1])) for node in model.graph.node
              if node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes]
    counts = Counter(shape for _, shape in linear)
    return [name for name, shape in linear if counts[shape] == 1]
