"""python -m convert [preset | checkpoint folder] [options]: build a Triton model repository."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import plan_build
from ._modelrepo import Precision, Target
from .errors import ConvertError
from .pipeline import BuildResult, build, is_up_to_date
from .progress import console
from .source import DEFAULT_PRESET, PRESETS, TASKS
from .validate import VariantReport


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__)
    parser.add_argument("model", nargs="?", default=DEFAULT_PRESET,
                        help=f"a preset ({', '.join(PRESETS)}) or a local Hugging Face checkpoint folder")
    parser.add_argument("--task", choices=TASKS, help="default: from the checkpoint (classification head or not)")
    parser.add_argument("--head", type=Path, help="a scikit-learn LogisticRegression (joblib) on the pooled embedding")
    parser.add_argument("--name", help="Triton name of the ensemble (default: the preset or folder name)")
    parser.add_argument("--no-normalize", action="store_true", help="do not L2-normalise pooled embeddings")
    parser.add_argument("--target", choices=[str(target) for target in Target], default=str(Target.CPU))
    parser.add_argument("--precision", choices=[str(precision) for precision in Precision],
                        help="served precision (default: int8 on cpu, fp16 on gpu)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens; longer texts are truncated")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("triton_models"), help="model repository to write into")
    parser.add_argument("--no-tensorrt-plan", action="store_true", help="gpu target: skip the tensorrt_plan model")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="cpu encoder threads (0: all cores)")
    parser.add_argument("--queue-delay-us", type=int, default=0,
                        help="dynamic batching: how long a request may wait for others (default 0)")
    parser.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False,
                        help="cpu: ONNX Runtime threads spin between parallel sections instead of sleeping: a "
                             "little faster on an idle machine of its own, far slower where cores are shared "
                             "(default: --no-spin; docs/throughput.md)")
    parser.add_argument("--if-stale", action="store_true",
                        help="skip the build when the repository already holds this exact build")
    return parser.parse_args(argv)


def print_summary(result: BuildResult, out: Console = console) -> None:
    """The variants table, then each variant's validation figures as plain lines under it: as a
    table column they wrapped a word a line at 80 columns and were cut short with '…'."""
    out.print(summary_table(result))
    if any(_figures(report) for report in result.reports):
        out.print("validation, one text at a time ([95% Wilson interval]):", markup=False, highlight=False)
    for report in result.reports:
        for line in figure_lines(report, out.width):
            out.print(line, markup=False, highlight=False)


def summary_table(result: BuildResult) -> Table:
    """Only short columns, so the table fits 80 columns; `fold` breaks a long cell, never cuts it."""
    table = Table(title=f"{result.name}: variants", title_justify="left")
    for column in ("variant", "size MB", "p50 ms @16", "p50 ms @128", "texts", "check"):
        table.add_column(column, overflow="fold")
    for report in result.reports:
        facts = result.variants.get(report.variant, {})
        table.add_row(report.variant, f"{facts.get('size_mb', 0):.1f}",
                      _ms(facts.get("p50_ms_16_tokens")), _ms(facts.get("p50_ms_128_tokens")), _texts(report),
                      "[green]passed[/green]" if report.passed else "[red]failed[/red]")
    return table


def figure_lines(report: VariantReport, width: int) -> list[str]:
    """`  int8 (476 held-out): top1_agreement 0.9958 [0.9848, 0.9988], ...`, as many figures to a
    line as fit in `width` columns; a figure is never split (one wider than that gets a line of its own)."""
    figures = _figures(report)
    pieces = [f"{figure}," for figure in figures[:-1]] + figures[-1:]
    lines = [f"  {report.variant} ({_texts(report)}):"]
    for piece in pieces:
        if len(lines[-1]) + 1 + len(piece) <= width:
            lines[-1] += f" {piece}"
        else:
            lines.append(f"    {piece}")
    return lines if figures else []


def _texts(report: VariantReport) -> str:
    return f"all {report.sentences}" if report.part == "all" else f"{report.sentences} {report.part}"


def _figures(report: VariantReport) -> list[str]:
    shown = []
    for metric, value in report.metrics.items():
        name = metric.removeprefix("single_")
        if metric.startswith("single_") and ("top1" in name or "cosine" in name or "accuracy" in name
                                             or name == "max_abs"):
            interval = report.intervals.get(metric)
            shown.append(f"{name} {value:.4g}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""))
    return shown


def int8_lines(entry: dict) -> list[str]:
    """The INT8 choice in a few lines: kept FP32 units, held-out figures, accuracy, speed, target."""
    choice = entry.get("int8_choice")
    if not choice:
        return []
    search, held = choice["search"], choice["held_out"]
    kept = choice["fp32_nodes"]
    lines = [f"INT8: {len(kept)} of {search['units']} units kept in FP32" + (f": {', '.join(kept)}" if kept else "")]
    if "top1_agreement" in held:
        full = choice.get("full_int8_held_out", {})
        lines.append(f"  held-out top-1 agreement {held['top1_agreement']:.4f} (95% CI {held['ci95'][0]:.4f}-"
                     f"{held['ci95'][1]:.4f}, {held['texts']} texts)"
                     + (f"; full INT8 {full['top1_agreement']:.4f}" if full else ""))
        lines += changed_answers_line(choice.get("changed_answers"))
    else:
        lines.append(f"  held-out min cosine {held['cosine_min']:.4f}, mean {held['cosine_mean']:.4f} "
                     f"({held['texts']} texts)")
    if "accuracy" in choice:
        acc = choice["accuracy"]
        lines.append(f"  accuracy on {acc['texts']} labelled held-out texts: reference {acc['reference']:.4f}, "
                     f"FP32 {acc['fp32']:.4f}, INT8 {acc['int8']:.4f}")
    for length, speed in choice.get("speed", {}).items():
        share = speed["share_of_full_int8_saving"]
        saving = f", {share:.0%} of its saving)" if share is not None else ")"
        lines.append(f"  {length} tokens: {speed['speedup_vs_fp32']:.2f}x FP32 (full INT8 "
                     f"{speed['full_int8_speedup_vs_fp32']:.2f}x" + saving)
    misses = choice["target_missed_by"]
    lines.append("  target met" if choice["target_met"] else "  target missed: " + "; ".join(misses or ["gate failed"]))
    return lines


def changed_answers_line(changed: dict | None) -> list[str]:
    if not changed or not changed["texts"]:
        return []
    return [f"  answers changed: {changed['texts']} of {changed['of']}, all where the reference's top two "
            f"classes were within {changed['largest_reference_margin']:.3f} in probability "
            f"({changed['reference_near_ties']} texts are within {changed['near_tie_margin']})"]


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    try:
        spec, options = plan_build(
            args.model, args.out, task=args.task, name=args.name, head=args.head, normalize=not args.no_normalize,
            target=args.target, precision=args.precision, max_length=args.max_length,
            max_batch_size=args.max_batch_size, tensorrt_plan=not args.no_tensorrt_plan,
            intra_op_threads=args.intra_op_threads, queue_delay_us=args.queue_delay_us, spin=args.spin)
        if args.if_stale and is_up_to_date(spec, options):
            console.print(f"{spec.name}: {args.out} is up to date (use without --if-stale to rebuild)")
            return 0
        result = build(spec, options)
    except ConvertError as error:
        print(f"error: {error}", file=sys.stderr)   # one line, never wrapped
        return 2
    print_summary(result)
    console.print(f"fusions: {result.fusion.describe()}")
    for line in int8_lines(result.manifest_entry.to_dict() if result.manifest_entry else {}):
        console.print(line)
    console.print(f"wrote {result.name} to {result.out}/ (manifest: {result.out}/manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
