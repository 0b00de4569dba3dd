"""What the manifest and the summary say about the served INT8 variant.

The held-out agreement with its 95% Wilson interval and the number of texts, accuracy
against people's labels, the FP32 units the search kept, the speed against FP32 and
against full INT8, and whether the target was met, or by how much it was missed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from .mixed_precision import Measure, Target
from .validate import BATCH_DEPENDENT_OPS, VariantReport, wilson_interval

if TYPE_CHECKING:
    from .pipeline import Int8Choice

LENGTHS = (16, 128)


def activation_scales(graph: onnx.ModelProto, smoothing: dict) -> dict:
    """How the served graph's INT8 projections scale their activations, counted in the graph:
    per token (convert/token_int8.py: a blocked QuantizeLinear each) or per tensor (ONNX
    Runtime's dynamic operators, the ones that make a graph batch-dependent)."""
    ops = [node.op_type for node in graph.graph.node]
    per_token = sum(node.op_type == "QuantizeLinear" and any(a.name == "block_size" for a in node.attribute)
                    for node in graph.graph.node)
    return {"per_token_projections": per_token, "smoothing_alpha": smoothing.get("alpha"),
            "per_tensor_operators": sum(ops.count(op) for op in BATCH_DEPENDENT_OPS)}


def speed_facts(facts: dict[str, dict]) -> dict[str, dict]:
    """Per length: the three latencies, both speed-ups over FP32, and the share of full INT8's
    time saving the chosen variant keeps: (FP32 - chosen) / (FP32 - full INT8)."""
    speed = {}
    for length in LENGTHS:
        key = f"p50_ms_{length}_tokens"
        fp32, chosen, full = facts["fp32"][key], facts["int8"][key], facts["int8-full"][key]
        saving = fp32 - full
        speed[str(length)] = {"fp32_ms": round(fp32, 3), "int8_ms": round(chosen, 3), "full_int8_ms": round(full, 3),
                              "speedup_vs_fp32": round(fp32 / chosen, 3),
                              "full_int8_speedup_vs_fp32": round(fp32 / full, 3),
                              "share_of_full_int8_saving": round((fp32 - chosen) / saving, 3) if saving > 0 else None}
    return speed


def held_out_figures(report: VariantReport) -> dict:
    metrics = report.metrics
    if "single_top1_agreement" in metrics:
        return {"texts": report.sentences, "top1_agreement": round(metrics["single_top1_agreement"], 5),
                "ci95": report.intervals["single_top1_agreement"]}
    return {"texts": report.sentences, "cosine_min": round(metrics["single_cosine_min"], 5),
            "cosine_mean": round(metrics["single_cosine_mean"], 5)}


def measure_figures(measure: Measure) -> dict:
    if measure.top1_agreement is not None:
        low, high = wilson_interval(round(measure.top1_agreement * measure.texts), measure.texts)
        return {"texts": measure.texts, "top1_agreement": round(measure.top1_agreement, 5),
                "ci95": [round(low, 4), round(high, 4)]}
    return {"texts": measure.texts, "cosine_min": round(measure.cosine_min, 5)}


def target_misses(report: VariantReport, speed: dict | None, target: Target) -> list[str]:
    """Each part of the target the served variant misses, with the figure and the gap."""
    misses = []
    agreement = report.metrics.get("single_top1_agreement")
    if agreement is not None and agreement < target.top1_agreement:
        misses.append(f"held-out top-1 agreement {agreement:.4f} < {target.top1_agreement} "
                      f"(by {target.top1_agreement - agreement:.4f}, {report.sentences} texts)")
    cosine = report.metrics.get("single_cosine_min")
    if cosine is not None and cosine < target.cosine_min:
        misses.append(f"held-out min cosine {cosine:.4f} < {target.cosine_min} (by {target.cosine_min - cosine:.4f})")
    for length, figures in (speed or {}).items():
        share = figures["share_of_full_int8_saving"]
        if share is not None and share < target.speed_share:
            misses.append(f"at {length} tokens it keeps {share:.0%} of full INT8's time saving over FP32 "
                          f"(< {target.speed_share:.0%})")
    return misses


def int8_facts(choice: Int8Choice, speed: dict | None, comparison: dict | None) -> dict:
    """The manifest's `int8_choice` field."""
    search, report = choice.search, choice.report
    facts = {"fp32_nodes": search.chosen.kept_fp32,
             "activation_scales": activation_scales(onnx.load(str(choice.path)), search.smoothing),
             "selection": measure_figures(search.chosen.measure),
             "held_out": held_out_figures(report), "target": search.target.__dict__}
    if comparison:
        facts["full_int8_held_out"] = measure_figures(comparison["full_int8"])
        if comparison.get("changed_answers"):
            facts["changed_answers"] = comparison["changed_answers"]
        if comparison["accuracy"] and "single_accuracy" in report.metrics:
            facts["accuracy"] = {"part": "held-out", "texts": report.labelled, **{
                name: round(value, 5) for name, value in comparison["accuracy"].items()},
                "int8": round(report.metrics["single_accuracy"], 5)}
    if speed:
        facts["speed"] = speed
    facts["target_missed_by"] = target_misses(report, speed, search.target)
    facts["target_met"] = report.passed and not facts["target_missed_by"]
    facts["search"] = search.as_dict()
    return facts
