"""Step 6: the validation gate. Every variant against the PyTorch reference.

Each variant runs on realistic sentences (2 tokens to past the maximum length) one by one
and in mixed-length batches. Thresholds depend on the precision; a variant that misses one
fails the build with the variant, the metric and the number. Float variants are checked on
every validation text; INT8, whose operators are chosen on the selection texts, is graded on
the held-out texts only, with a Wilson interval on its agreement (convert/sentences.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from ._modelrepo import Precision
from .errors import ConvertError
from .python_models.onnx_encoder_model import run_batch
from .python_models.tokenizer_model import encode

if TYPE_CHECKING:
    import torch

PLAIN = "plain"   # the unfused FP32 graph, for TensorRT: a variant, not a served precision
# Operators that scale activations by a whole tensor at run time: with them a sentence's
# output depends on the rest of its batch, so the served model runs such a graph row by row
# (onnx_encoder_model.run_batch). Per-token INT8 (convert/token_int8.py) and float graphs
# have none and run whole batches; the gate's batched check holds them to that.
BATCH_DEPENDENT_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention"}

BATCH_SIZE = 8


@dataclass(frozen=True)
class Thresholds:
    max_abs: float | None            # on logits / embeddings, for float variants
    batch_max_abs: float             # batched rows against the same rows run alone
    top1_agreement: float | None     # classifiers, int8
    cosine_mean: float | None        # embeddings, int8
    cosine_min: float | None


THRESHOLDS = {
    Precision.FP32: Thresholds(max_abs=1e-4, batch_max_abs=1e-4, top1_agreement=None, cosine_mean=None,
                               cosine_min=None),
    Precision.FP16: Thresholds(max_abs=1e-2, batch_max_abs=1e-2, top1_agreement=None, cosine_mean=None,
                               cosine_min=None),
    PLAIN: Thresholds(max_abs=1e-4, batch_max_abs=1e-4, top1_agreement=None, cosine_mean=None, cosine_min=None),
    Precision.INT8: Thresholds(max_abs=None, batch_max_abs=1e-5, top1_agreement=0.99, cosine_mean=0.99,
                               cosine_min=0.97),
}


@dataclass
class VariantReport:
    variant: str
    precision: str
    sentences: int
    metrics: dict[str, float] = field(default_factory=dict)   # metric -> measured value
    limits: dict[str, str] = field(default_factory=dict)      # metric -> "<= 1e-4" etc.
    failures: list[str] = field(default_factory=list)
    part: str = "all"                                         # which validation texts: all, held-out
    labelled: int = 0                                         # texts with a person's intent (accuracy)
    intervals: dict[str, list[float]] = field(default_factory=dict)   # metric -> 95% Wilson interval

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


def reference_outputs(model: torch.nn.Module, feeds: list[dict[str, np.ndarray]], index: int = 0) -> np.ndarray:
    """The reference's output `index` (the first: logits or embedding), one sentence at a time."""
    import torch  # here, not at the top: the gate's arithmetic runs without torch (Python 3.12 tests)
    rows, threads = [], torch.get_num_threads()
    # One thread: for one sentence at a time a second one costs more in synchronisation than
    # it saves, and on a shared machine far more (200 MiniLM texts: 7 s against 87 s).
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for feed in feeds:
                output = model(**{name: torch.from_numpy(value) for name, value in feed.items()})[index]
                rows.append(output.numpy())
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(rows)


def single_sentence_session(model: str | Path | bytes) -> ort.InferenceSession:
    """A session for running validation texts one at a time, on one thread (as above: 200
    MiniLM INT8 texts in 0.3-0.6 s against 0.8-1.0 s on two shared cores; MLAS splits work
    across threads by output blocks, so the figures do not depend on the thread count)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def one_by_one(session: ort.InferenceSession, output: str, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([session.run([output], feed)[0] for feed in feeds])


def batched(session: ort.InferenceSession, output: str, tokenizer, texts: list[str], with_types: bool,
            row_by_row: bool) -> np.ndarray:
    """Mixed-length batches in a shuffled order, so short sentences sit beside long ones,
    run through the very function the served encoder model uses."""
    order = np.random.default_rng(0).permutation(len(texts))
    rows = {}
    for start in range(0, len(texts), BATCH_SIZE):
        chunk = order[start:start + BATCH_SIZE]
        feeds = encode(tokenizer, [texts[i] for i in chunk], with_types)
        rows.update(zip(chunk.tolist(), run_batch(session, feeds, [output], row_by_row)[0]))
    return np.stack([rows[i] for i in range(len(texts))])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def compare(candidate: np.ndarray, reference: np.ndarray, is_classifier: bool, prefix: str) -> dict[str, float]:
    """Max |Δ| always; top-1 agreement for classifiers; cosine for embeddings."""
    metrics = {f"{prefix}max_abs": float(np.abs(candidate - reference).max())}
    if is_classifier:
        metrics[f"{prefix}max_abs_probability"] = float(np.abs(_softmax(candidate) - _softmax(reference)).max())
        metrics[f"{prefix}top1_agreement"] = float((candidate.argmax(-1) == reference.argmax(-1)).mean())
    else:
        cosine = _cosine(candidate, reference)
        metrics[f"{prefix}cosine_mean"] = float(cosine.mean())
        metrics[f"{prefix}cosine_min"] = float(cosine.min())
    return metrics


def _check(report: VariantReport, metric: str, limit: float | None, at_most: bool) -> None:
    if limit is None or metric not in report.metrics:
        return
    value = report.metrics[metric]
    report.limits[metric] = f"{'<=' if at_most else '>='} {limit:g}"
    if (value > limit) if at_most else (value < limit):
        report.failures.append(f"{metric} = {value:.6g} ({report.limits[metric]})")


def apply_thresholds(report: VariantReport) -> VariantReport:
    limits = THRESHOLDS[report.precision]
    # The same limits hold against the reference and between batched and one-by-one runs.
    _check(report, "batch_vs_single_max_abs", limits.batch_max_abs, at_most=True)
    for prefix in ("single_", "batched_", "batch_vs_single_"):
        _check(report, f"{prefix}max_abs", limits.max_abs, at_most=True)
        _check(report, f"{prefix}top1_agreement", limits.top1_agreement, at_most=False)
        _check(report, f"{prefix}cosine_mean", limits.cosine_mean, at_most=False)
        _check(report, f"{prefix}cosine_min", limits.cosine_min, at_most=False)
    return report


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: unlike the normal approximation it stays
    inside [0, 1] and is not empty at 100%, which agreement figures sit next to."""
    if total <= 0:
        raise ValueError("a proportion of 0 texts has no interval")
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(outputs: np.ndarray, classes: np.ndarray) -> float:
    """Top-1 accuracy on the rows with a person's label (class index >= 0)."""
    labelled = classes >= 0
    return float((outputs[labelled].argmax(-1) == classes[labelled]).mean())


def add_intervals(report: VariantReport) -> None:
    for metric, value in report.metrics.items():
        if metric.endswith("top1_agreement"):
            low, high = wilson_interval(round(value * report.sentences), report.sentences)
            report.intervals[metric] = [round(low, 4), round(high, 4)]
        elif metric.endswith("accuracy") and report.labelled:
            low, high = wilson_interval(round(value * report.labelled), report.labelled)
            report.intervals[metric] = [round(low, 4), round(high, 4)]


def runs_row_by_row(onnx_path: Path) -> bool:
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in BATCH_DEPENDENT_OPS for node in graph.node)


def validate_variant(variant: str, precision: str, onnx_path: Path, reference: np.ndarray, tokenizer,
                     texts: list[str], output: str, with_types: bool, classes: np.ndarray | None = None,
                     part: str = "all") -> VariantReport:
    """Run one variant one by one and batched; compare with the reference and with itself;
    with `classes` (a person's class index per text, -1 when none), also its accuracy."""
    session = single_sentence_session(onnx_path)
    feeds = [encode(tokenizer, [text], with_types) for text in texts]
    single = one_by_one(session, output, feeds)
    in_batches = batched(session, output, tokenizer, texts, with_types, runs_row_by_row(onnx_path))
    is_classifier = output == "logits"
    report = VariantReport(variant=variant, precision=precision, sentences=len(texts), part=part)
    report.metrics |= compare(single, reference, is_classifier, "single_")
    report.metrics |= compare(in_batches, reference, is_classifier, "batched_")
    report.metrics |= compare(in_batches, single, is_classifier, "batch_vs_single_")
    if is_classifier and classes is not None and (classes >= 0).any():
        report.labelled = int((classes >= 0).sum())
        report.metrics["single_accuracy"] = accuracy(single, classes)
    add_intervals(report)
    return apply_thresholds(report)


def require_passed(reports: list[VariantReport]) -> None:
    failed = [f"{r.variant}: {'; '.join(r.failures)}" for r in reports if not r.passed]
    if failed:
        raise ConvertError("validation failed: " + " | ".join(failed))
