"""Every unit in INT8 under three activation-scale schemes, side by side (docs/int8.md).

    .venv/bin/python scripts/int8_schemes.py minilm-intent [--out DIR]

Builds the preset's FP32 graph and reference answers as the build does, then quantises every
MatMul, Gemm and Attention (the embeddings and the head stay FP32, so that only the
activation scales differ) with:
  tensor          ONNX Runtime's dynamic INT8, one scale per activation tensor;
  token           one scale per token (convert/token_int8.py), no smoothing;
  token+smooth    one scale per token after SmoothQuant's channel smoothing, the strength
                  the build would choose on the selection texts.
For each: its error and agreement on the selection and held-out texts, and its in-process
p50 at 16 and 128 tokens against FP32 (the variants timed in turns, convert/latency.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert import mixed_precision, optimize, pipeline, token_int8  # noqa: E402
from convert.latency import latencies_by_length  # noqa: E402
from convert.python_models.tokenizer_model import load_tokenizer  # noqa: E402
from convert.reference import build_reference  # noqa: E402
from convert.sentences import HELD_OUT, SELECTION, validation_sentences  # noqa: E402
from convert.source import resolve_model_spec  # noqa: E402


def variants(fp32: Path, work: Path, evaluator: mixed_precision.Evaluator) -> tuple[dict[str, Path], float]:
    graph = token_int8.upgrade_opset(onnx.load(str(fp32)))
    units = token_int8.units(graph, exclude=optimize.head_nodes(graph))
    embeddings = [n.name for n in graph.graph.node if n.op_type == "EmbedLayerNormalization"]
    smoothing, _ = mixed_precision.choose_smoothing(graph, units, evaluator)
    paths = {"fp32": fp32,
             "tensor": optimize.quantize_int8(fp32, work / "tensor.onnx", embeddings),
             "token": optimize.quantize_int8(fp32, work / "token.onnx", embeddings, scales="token"),
             "token+smooth": optimize.quantize_int8(fp32, work / "smooth.onnx", embeddings, scales="token",
                                                    smoothing=smoothing)}
    return paths, smoothing.alpha


def figure(measure: mixed_precision.Measure) -> str:
    if measure.top1_agreement is not None:
        return f"{measure.top1_agreement:.4f}"
    return f"{measure.cosine_min:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=("minilm-intent", "minilm-embed"))
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = resolve_model_spec(args.preset)
    reference = build_reference(spec)
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", 512)
    with tempfile.TemporaryDirectory(prefix="int8-schemes-") as scratch:
        work, timings = Path(scratch), {}
        pipeline.build_variants(reference, work, pipeline.Target.CPU, pipeline.Precision.FP32, timings)
        checks = pipeline.reference_answers(reference, tokenizer, timings)
        selection, held_out = checks.subset(SELECTION), checks.subset(HELD_OUT)
        paths, alpha = variants(work / "fp32.onnx", work, selection.evaluator())
        latencies = latencies_by_length(paths, tokenizer, max(validation_sentences(), key=len),
                                        reference.output_names[0], checks.with_types)
        metric = "top-1 agreement" if checks.output == "logits" else "min cosine"
        lines = [f"{args.preset}: every MatMul, Gemm and Attention in INT8 (embeddings and head FP32); "
                 f"smoothing strength chosen: {alpha}",
                 "",
                 f"| scheme | selection {metric} | selection error | held-out {metric} | held-out error "
                 "| p50 16 tokens (ms) | p50 128 tokens (ms) |",
                 "|---|---|---|---|---|---|---|"]
        for name, path in paths.items():
            graph = onnx.load(str(path))
            on = {part.part: part.evaluator().measure(graph, list(range(len(part.texts))))
                  for part in (selection, held_out)}
            p50 = latencies[name]
            lines.append(f"| {name} | {figure(on[SELECTION])} | {on[SELECTION].error:.2e} | {figure(on[HELD_OUT])} "
                         f"| {on[HELD_OUT].error:.2e} | {p50['p50_ms_16_tokens']:.2f} | "
                         f"{p50['p50_ms_128_tokens']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
