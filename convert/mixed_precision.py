"""Step 5: which MatMuls run in INT8, chosen by measured sensitivity on the selection texts.

Dynamic INT8 error is not spread evenly: a few operators cause most of the answers that
change. The search keeps in FP32 the fewest of them that bring the selection texts to
the target, and leaves the rest in INT8 (most of the speed-up):
0. smoothing: SmoothQuant's strength (SMOOTHING_ALPHAS) that gives every MatMul and
   Attention in per-token INT8 (convert/token_int8.py) the least error on the selection
   texts, with channel ranges calibrated on the same texts.
1. every unit in INT8 (those, and the embeddings in ONNX Runtime's INT8; the head always
   stays FP32) on the selection texts; if that meets the target, nothing is kept.
2. sensitivity: each unit quantised alone, run on the probe texts (the selection texts
   full INT8 moves most), its error against the cached reference outputs.
3. greedy: the unit removing most error per multiply-add back to FP32, then the next, while
   the FP32 multiply-adds fit the speed target; then, if the agreement target still needs
   it, the most sensitive of the rest; until the selection texts meet the target (early
   stop) or half the units (at most MAX_STEPS) are FP32. Served: the first step that meets
   the target, else the last that passes the gate on the selection texts (SearchResult.chosen).
Variants of steps 2-3 are spliced in memory from the FP32 graph and the every-unit INT8 graph
of step 1 (quantising each from scratch takes seconds); the served graph is then quantised
again with the chosen exclusions (convert/optimize.py: quantize_int8) and graded by the gate
on the held-out texts. Every
step is deterministic: fixed texts, fixed order, ties broken by graph order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ._modelrepo import Precision
from .token_int8 import Smoothing, calibrate, opset_of, quantize_units
from .validate import THRESHOLDS, single_sentence_session

PROBE_TEXTS = 48     # sensitivity is measured on this many selection texts
NEAR_TIE = 0.02      # reference texts whose two most likely classes are this close: reported
SMOOTHING_ALPHAS = (0.5, 0.65, 0.8)   # SmoothQuant's default, and stronger migration
MAX_STEPS = 12       # greedy steps at most (each runs every selection text): bounds the build time
# Operators that only a quantised replacement holds (an excluded Gemm may come back as
# MatMul + Add, which is not quantisation).
QUANTISED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                 "QAttention", "QEmbedLayerNormalization", "QGemm"}


@dataclass(frozen=True)
class Target:
    """What the search aims for (the gate's limits are lower): agreement on the selection
    texts, and at least this share of full INT8's time saving over FP32."""
    top1_agreement: float = 0.995    # classifiers
    cosine_min: float = 0.99         # embeddings
    speed_share: float = 0.8         # (FP32 - chosen) / (FP32 - full INT8) latency


@dataclass(frozen=True)
class Measure:
    """A variant's outputs against the reference on some texts."""
    texts: int
    top1_agreement: float | None     # classifiers
    cosine_min: float | None         # embeddings
    error: float                     # mean KL divergence (classifiers) or 1 - cosine (embeddings)

    def meets(self, target: Target) -> bool:
        if self.top1_agreement is not None:
            return self.top1_agreement >= target.top1_agreement
        return self.cosine_min >= target.cosine_min

    def passes_gate(self) -> bool:
        """The gate's limits (validate.THRESHOLDS), here on the texts this was measured on."""
        gate = THRESHOLDS[Precision.INT8]
        if self.top1_agreement is not None:
            return self.top1_agreement >= gate.top1_agreement
        return self.cosine_min >= gate.cosine_min and 1 - self.error >= gate.cosine_mean


def per_text_error(candidate: np.ndarray, reference: np.ndarray, is_classifier: bool) -> np.ndarray:
    if is_classifier:   # KL(reference || candidate) of the softmax distributions
        log_p, log_q = _log_softmax(reference), _log_softmax(candidate)
        return (np.exp(log_p) * (log_p - log_q)).sum(-1)
    cosine = (candidate * reference).sum(-1) / (
        np.linalg.norm(candidate, axis=-1) * np.linalg.norm(reference, axis=-1) + 1e-12)
    return 1 - cosine


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def measure(candidate: np.ndarray, reference: np.ndarray, is_classifier: bool) -> Measure:
    error = per_text_error(candidate, reference, is_classifier)
    if is_classifier:
        agreement = float((candidate.argmax(-1) == reference.argmax(-1)).mean())
        return Measure(len(reference), agreement, None, float(error.mean()))
    return Measure(len(reference), None, float(1 - error.max()), float(error.mean()))


def changed_answers(candidate: np.ndarray, reference: np.ndarray) -> dict:
    """How many top-1 answers differ, and how close the reference's two most likely classes
    were on those texts (softmax probabilities): a change on a near tie is a coin toss that
    any rounding can make, one on a clear answer is a real error."""
    changed = candidate.argmax(-1) != reference.argmax(-1)
    probabilities = np.exp(_log_softmax(reference))
    top_two = np.sort(probabilities, axis=-1)[:, -2:]
    margins = top_two[:, 1] - top_two[:, 0]
    return {"texts": int(changed.sum()), "of": len(reference),
            "largest_reference_margin": round(float(margins[changed].max()), 4) if changed.any() else None,
            "reference_near_ties": int((margins < NEAR_TIE).sum()), "near_tie_margin": NEAR_TIE}


# ---------------------------------------------------------------- variants spliced in memory

class SplicedGraphs:
    """Any mix of FP32 and INT8 units, built from the FP32 graph and the every-unit INT8 graph.

    A unit is an FP32 node whose output the INT8 graph computes with other operators
    (QAttention, MatMulInteger with its DynamicQuantizeLinear and scale multiplications,
    QEmbedLayerNormalization). Its INT8 replacement is every INT8-graph node between the
    unit's outputs and tensors the FP32 graph already has."""

    def __init__(self, fp32: onnx.ModelProto, int8: onnx.ModelProto):
        if opset_of(fp32) != opset_of(int8):
            raise ValueError(f"the FP32 graph is at opset {opset_of(fp32)} and the INT8 graph at {opset_of(int8)}: "
                             "upgrade the FP32 graph (token_int8.upgrade_opset) before splicing")
        self.fp32, self.int8 = fp32, int8
        self.replacements = _replacements(fp32, int8)
        self.units = [node.name for node in fp32.graph.node if node.name in self.replacements]
        self._fp32_weights = {t.name: t for t in fp32.graph.initializer}
        self._int8_weights = {t.name: t for t in int8.graph.initializer}
        self.macs = {node.name: self._macs_per_token(node) for node in fp32.graph.node if node.name in self.units}

    def _macs_per_token(self, node: onnx.NodeProto) -> int:
        """What keeping the unit in FP32 costs: its weight's size for a projection; nothing for
        the embeddings (a table lookup)."""
        if node.op_type not in ("MatMul", "Gemm", "Attention"):
            return 0
        weights = [self._fp32_weights[i].dims for i in node.input if i in self._fp32_weights]
        return max((int(np.prod(dims)) for dims in weights if len(dims) == 2), default=0)

    def model(self, quantized: set[str]) -> onnx.ModelProto:
        unknown = set(quantized) - set(self.units)
        if unknown:
            raise ValueError(f"not quantisable units of this graph: {sorted(unknown)}")
        nodes, produced = [], set()
        for node in self.fp32.graph.node:
            for part in self.replacements[node.name] if node.name in quantized else [node]:
                if not set(part.output) & produced:    # a quantised input shared by two units: once
                    nodes.append(part)
                    produced.update(part.output)
        used = {name for node in nodes for name in node.input}
        weights = [self._fp32_weights[name] if name in self._fp32_weights else self._int8_weights[name]
                   for name in sorted(used) if name in self._fp32_weights or name in self._int8_weights]
        graph = onnx.helper.make_graph(nodes, self.fp32.graph.name, self.fp32.graph.input, self.fp32.graph.output,
                                       weights, value_info=self.fp32.graph.value_info)
        opsets = {o.domain: o for o in list(self.fp32.opset_import) + list(self.int8.opset_import)}
        return onnx.helper.make_model(graph, opset_imports=list(opsets.values()), ir_version=self.int8.ir_version)


def _replacements(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    fp32_tensors = ({i.name for i in fp32.graph.input} | {t.name for t in fp32.graph.initializer}
                    | {o for n in fp32.graph.node for o in n.output})
    producer = {o: (index, node) for index, node in enumerate(int8.graph.node) for o in node.output if o}
    found = {}
    for node in fp32.graph.node:
        first = producer.get(node.output[0])
        if first is None or (first[1].op_type == node.op_type and first[1].name == node.name):
            continue     # the INT8 graph computes this output as the FP32 graph does
        collected, pending = {}, [o for o in node.output if o in producer]
        while pending:
            index, part = producer[pending.pop()]
            if index in collected:
                continue
            collected[index] = part
            pending += [i for i in part.input if i and i not in fp32_tensors and i in producer]
        if any(part.op_type in QUANTISED_OPS for part in collected.values()):
            found[node.name] = [collected[i] for i in sorted(collected)]    # INT8 graph order
    return found


# ---------------------------------------------------------------- the search

@dataclass
class Step:
    kept_fp32: list[str]
    measure: Measure


@dataclass
class SearchResult:
    units: list[str]
    target: Target
    steps: list[Step]                                 # full INT8 first, then one unit more in FP32 each
    sensitivity: dict[str, Measure] = field(default_factory=dict)   # unit -> alone in INT8, on the probe
    fp32_macs_share: float = 0.0                      # of the units' multiply-adds, in the chosen step
    within_speed_budget: int = 0                      # greedy steps whose FP32 units fit the speed budget
    smoothing: dict = field(default_factory=dict)     # the strength chosen, each one's selection error

    @property
    def chosen(self) -> Step:
        """The first step that met the target's agreement (the fastest that did: each step keeps
        one unit more in FP32). Else the last that passes the gate on the selection texts: the
        most error removed among them, so that the held-out gate, which grades it next, has
        the best chance to pass it. Else the last step."""
        met = next((s for s in self.steps if s.measure.meets(self.target)), None)
        return met or next((s for s in reversed(self.steps) if s.measure.passes_gate()), self.steps[-1])

    def as_dict(self) -> dict:
        return {"target": self.target.__dict__, "units": len(self.units),
                "kept_fp32": self.chosen.kept_fp32, "met_on_selection": self.chosen.measure.meets(self.target),
                "fp32_macs_share": round(self.fp32_macs_share, 4), "within_speed_budget": self.within_speed_budget,
                "steps": [{"kept_fp32": len(s.kept_fp32), **s.measure.__dict__} for s in self.steps],
                "sensitivity": {unit: m.__dict__ for unit, m in self.sensitivity.items()},
                "smoothing": self.smoothing}


class Evaluator:
    """Runs a graph on the selection texts one by one (as dynamic INT8 is served) against the
    reference's outputs, computed once by the caller."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], reference: np.ndarray, output: str, is_classifier: bool):
        self.feeds, self.reference, self.output, self.is_classifier = feeds, reference, output, is_classifier

    def outputs(self, model: onnx.ModelProto, rows: list[int]) -> np.ndarray:
        session = single_sentence_session(model.SerializeToString())
        return np.concatenate([session.run([self.output], self.feeds[i])[0] for i in rows])

    def measure(self, model: onnx.ModelProto, rows: list[int]) -> Measure:
        return measure(self.outputs(model, rows), self.reference[rows], self.is_classifier)

    def probe_rows(self, full_int8: np.ndarray, count: int = PROBE_TEXTS) -> list[int]:
        """The texts full INT8 moves most (stable order for ties)."""
        error = per_text_error(full_int8, self.reference, self.is_classifier)
        return sorted(np.argsort(-error, kind="stable")[:count].tolist())


def choose_smoothing(fp32: onnx.ModelProto, units: list[str], evaluator: Evaluator,
                     alphas: tuple[float, ...] = SMOOTHING_ALPHAS) -> tuple[Smoothing, dict[float, Measure]]:
    """The smoothing strength with the least error on the selection texts, every unit in
    per-token INT8; ties go to the first (the weakest migration)."""
    absmax = calibrate(fp32, units, evaluator.feeds)
    rows = list(range(len(evaluator.feeds)))
    measured = {alpha: evaluator.measure(quantize_units(fp32, units, Smoothing(alpha, absmax)), rows)
                for alpha in alphas}
    best = min(alphas, key=lambda alpha: measured[alpha].error)
    return Smoothing(best, absmax), measured


def search(graphs: SplicedGraphs, evaluator: Evaluator, target: Target) -> SearchResult:
    everything = list(range(len(evaluator.feeds)))
    all_units = set(graphs.units)
    full_outputs = evaluator.outputs(graphs.model(all_units), everything)
    full = measure(full_outputs, evaluator.reference, evaluator.is_classifier)
    result = SearchResult(graphs.units, target, [Step([], full)])
    if full.meets(target):
        return result
    probe = evaluator.probe_rows(full_outputs)
    result.sensitivity = {unit: evaluator.measure(graphs.model({unit}), probe) for unit in graphs.units}
    order, result.within_speed_budget = greedy_order(graphs, result.sensitivity, target)
    kept: list[str] = []
    for unit in order[:min(len(graphs.units) // 2, MAX_STEPS)]:
        kept.append(unit)
        step = Step(list(kept), evaluator.measure(graphs.model(all_units - set(kept)), everything))
        result.steps.append(step)
        if step.measure.meets(target):
            break
    result.fp32_macs_share = sum(graphs.macs[u] for u in result.chosen.kept_fp32) / max(sum(graphs.macs.values()), 1)
    return result


def greedy_order(graphs: SplicedGraphs, sensitivity: dict[str, Measure], target: Target) -> tuple[list[str], int]:
    """Units to put back in FP32, and how many of the first stay within the speed budget.

    First, most error removed per multiply-add, as long as the FP32 multiply-adds stay within
    the budget (a 0.8 share of full INT8's saving leaves 0.2 of the units' multiply-adds to
    FP32). Then, if the target still needs more, the rest by error alone: the target's
    agreement comes before its speed, and the build reports the speed it missed. sorted() is
    stable, also in reverse: equally ranked units stay in graph order, so the same inputs
    give the same order."""
    per_cost = sorted(graphs.units, key=lambda u: sensitivity[u].error / max(graphs.macs[u], 1), reverse=True)
    budget = round((1 - target.speed_share) * sum(graphs.macs.values()))
    within, spent = [], 0
    for unit in per_cost:
        if spent + graphs.macs[unit] <= budget:
            within.append(unit)
            spent += graphs.macs[unit]
    rest = sorted((u for u in graphs.units if u not in within), key=lambda u: sensitivity[u].error, reverse=True)
    return within + rest, len(within)
