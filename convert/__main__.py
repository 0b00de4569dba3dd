"""python -m convert [preset | checkpoint folder] [options]: build a Triton model repository."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.table import Table

from . import plan_build
from ._modelrepo import Precision, Target
from .errors import ConvertError
from .pipeline import BuildResult, build, is_up_to_date
from .progress import console
from .source import DEFAULT_PRESET, PRESETS, TASKS


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
    parser.add_argument("--no-spin", action="store_true",
                        help="cpu: ONNX Runtime threads sleep at once instead of spinning (frees cores, slower)")
    parser.add_argument("--if-stale", action="store_true",
                        help="skip the build when the repository already holds this exact build")
    return parser.parse_args(argv)


def summary_table(result: BuildResult) -> Table:
    table = Table(title=f"{result.name}: variants", title_justify="left")
    for column in ("variant", "size MB", "p50 ms @16", "p50 ms @128", "validation", "figures"):
        table.add_column(column)
    for report in result.reports:
        facts = result.variants.get(report.variant, {})
        figures = ", ".join(f"{metric.removeprefix('single_')} {value:.4g}" for metric, value in report.metrics.items()
                            if metric.startswith("single_")
                            and ("top1" in metric or "cosine" in metric or "max_abs" == metric[7:]))
        table.add_row(report.variant, f"{facts.get('size_mb', 0):.1f}",
                      _ms(facts.get("p50_ms_16_tokens")), _ms(facts.get("p50_ms_128_tokens")),
                      "[green]passed[/green]" if report.passed else "[red]failed[/red]", figures)
    return table


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
            intra_op_threads=args.intra_op_threads, queue_delay_us=args.queue_delay_us, spin=not args.no_spin)
        if args.if_stale and is_up_to_date(spec, options):
            console.print(f"{spec.name}: {args.out} is up to date (use without --if-stale to rebuild)")
            return 0
        result = build(spec, options)
    except ConvertError as error:
        print(f"error: {error}", file=sys.stderr)   # one line, never wrapped
        return 2
    console.print(summary_table(result))
    console.print(f"wrote {result.name} to {result.out}/ (manifest: {result.out}/manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
