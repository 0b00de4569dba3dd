"""The `tune` subcommand of `python -m perf`: search, apply, and rewrite the GPU config."""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from .space import PRESETS, ROLES


def add_parser(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser("tune", help="Model Analyzer's config search on the local CPU server, "
                                            "its best configs in a report; `tune apply` writes one into a repository")
    tune.add_argument("--model", default="minilm-intent", help="the build's name [minilm-intent]")
    tune.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    tune.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                      help="smoke: a minute, checks the tools; quick: minutes, the fused model; "
                           "full: a night on 2 cores, fused, encoder and ensemble [quick]")
    tune.add_argument("--models", type=_roles, default=None,
                      help=f"comma-separated, among {','.join(ROLES)} [the preset's]")
    tune.add_argument("--tokens", type=int, nargs="+", default=None, help="token lengths [16 128]")
    tune.add_argument("--budget-p99-ms", type=float, default=50.0, help="p99 constraint for the best configs [50]")
    tune.add_argument("--out", type=Path, default=None, help="results folder [perf/results/tune-<timestamp>]")
    tune.add_argument("--resume", action="store_true",
                      help="continue an interrupted run into the same --out: configs already measured are kept")
    actions = tune.add_subparsers(dest="tune_action")
    apply = actions.add_parser("apply", help="write a config the search measured into a built repository")
    apply.add_argument("--results", type=Path, required=True, help="the folder `python -m perf tune` wrote")
    apply.add_argument("--config", required=True,
                       help="a config name from its report, e.g. minilm-intent-fused_config_1")
    apply.add_argument("--repository", type=Path, required=True, help="the built repository to change")
    apply.add_argument("--tokens", dest="apply_tokens", type=int, default=None,
                       help="the length whose run named the config, when the name differs between runs")
    actions.add_parser("gpu-config", help="rewrite perf/model_analyzer.yaml from the search space")
    report = actions.add_parser("report", help="rewrite tune.md from a results folder's tune.json")
    report.add_argument("results_dir", type=Path)


def run(args: argparse.Namespace) -> int:
    if args.tune_action == "apply":
        return _apply(args)
    if args.tune_action == "report":
        from .report import rewrite_report

        print(rewrite_report(args.results_dir))
        return 0
    if args.tune_action == "gpu-config":
        from .space import write_gpu_config

        print(write_gpu_config())
        return 0
    from .runner import TuneOptions, tune

    out_dir = args.out or Path("perf/results") / datetime.now().strftime("tune-%Y%m%d-%H%M%S")
    report = tune(TuneOptions(args.model_repository, args.model, out_dir, preset=args.preset, roles=args.models,
                              budget_p99_ms=args.budget_p99_ms,
                              token_lengths=tuple(args.tokens) if args.tokens else None, resume=args.resume))
    print(report.read_text())
    print(f"[tune] report: {report}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from .apply import apply_settings, chosen_settings

    settings = chosen_settings(args.results, args.config, args.apply_tokens)
    changed = apply_settings(args.repository, settings, args.model)
    for model, fields in changed.items():
        print(f"{model}: {', '.join(fields) or 'unchanged (already so)'}")
    return 0


def _roles(text: str) -> tuple[str, ...]:
    roles = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(f"{text!r}: name models among {', '.join(ROLES)}, comma-separated")
    return roles
