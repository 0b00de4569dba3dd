"""Steps 2-4: symbolic shape inference, ONNX Runtime's transformer fusions, precision variants."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

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

    def describe(self) -> str:
        ops = ", ".join(f"{op} {n}" for op, n in self.fused.items() if n)
        state = "attention fused" if self.attention_fused else "ATTENTION NOT FUSED"
        return f"{self.nodes_before} -> {self.nodes_after} nodes; {ops}; {state}"


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
    """Fuse attention, layer norms and GELU with ONNX Runtime's offline transformer optimizer."""
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
                        fused=fused, attention_fused=attention > 0)


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


@dataclass(frozen=True)
class Int8Scheme:
    """Which operators dynamic INT8 quantises. The build tries the schemes in order and
    serves the first that passes the validation gate on this machine's CPU."""
    name: str
    keeps_fp32: str                        # what stays in FP32, for the build log and manifest
    op_types: tuple[str, ...] | None       # None: every operator ONNX Runtime can quantise
    feed_forward_only: bool = False


# Why more than one: CPUs without AVX-512 VNNI / AVX-VNNI compute U8S8 products with
# VPMADDUBSW, whose 16-bit sums saturate, and the lost precision flips low-margin
# classifications (MiniLM-intent on an AVX2-only EPYC: top-1 agreement 0.967 for "all",
# 0.986 for "encoder", 0.991 for "feed-forward"; see perf/NOTES.md). The feed-forward
# MatMuls hold two thirds of the encoder's multiply-adds, so that scheme keeps most of the gain.
INT8_SCHEMES = (
    Int8Scheme("all", "the head", None),
    Int8Scheme("encoder", "the embeddings and the head", ("MatMul", "Attention")),
    Int8Scheme("feed-forward", "attention, the embeddings and the head", ("MatMul",), feed_forward_only=True),
)


def quantize_int8(source: Path, target: Path, scheme: Int8Scheme = INT8_SCHEMES[0]) -> Path:
    """Dynamic INT8 with per-channel weight scales (per-tensor scales hurt MiniLM badly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = {"op_types_to_quantize": list(scheme.op_types)} if scheme.op_types else {}
    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=kept_in_fp32(onnx.load(str(source)), scheme.feed_forward_only),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)
    return target


def kept_in_fp32(model: onnx.ModelProto, feed_forward_only: bool) -> list[str]:
    """Names of the MatMul/Gemm nodes that stay FP32.

    Always the head: a weight shape no layer repeats. It costs nothing to run in FP32 and
    its INT8 error lands directly on the logits. With feed_forward_only, also every
    projection that is not hidden x intermediate (the one non-square shape each layer
    has twice): the rule holds for BERT, DistilBERT and MiniLM whatever their node names."""
    shapes = {init.name: frozenset(init.dims) for init in model.graph.initializer}
    linear = [(node.name, shapes.get(node.input[1])) for node in model.graph.node
              if node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes]
    counts = Counter(shape for _, shape in linear)
    keep = [name for name, shape in linear if counts[shape] == 1]
    if feed_forward_only:
        non_square = Counter({shape: n for shape, n in counts.items() if len(shape) == 2 and n > 1})
        if not non_square:
            raise ConvertError("no feed-forward MatMul found to quantise (no non-square weight repeats)")
        feed_forward = non_square.most_common(1)[0][0]
        keep += [name for name, shape in linear if shape != feed_forward and counts[shape] > 1]
    return keep
