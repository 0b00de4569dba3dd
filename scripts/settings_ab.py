"""Configs that `python -m perf tune` found, measured in turn, round after round: what Model
Analyzer cannot do.

Model Analyzer (python -m perf tune, docs/tuning.md) searches the settings: it measures each
config once, one after the other, and records no p50. On a shared machine figures drift by
20% over minutes, so two close configs are only told apart when measured in turn, round after
round, so that the drift hits each alike. This script does that for a few configs of a tune
results folder (and the repository as built): one copy of the repository per config, written
through `tune apply`'s config writer, each served in turn and measured with perf_analyzer (p50
and throughput) on the cases below.

    .venv/bin/python scripts/settings_ab.py triton_models --results perf/results/tune-<stamp> \\
        --configs minilm-intent-fused_config_1,minilm-intent-fused_config_3 --rounds 2

The "Server-side settings" table of perf/NOTES.md was measured by this script's earlier form
(hand-written variants: queue delay, intra-op threads, spinning, instances).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script from anywhere

from modelrepo import ModelNames  # noqa: E402
from perf.analyzer import build_command, run_perf_analyzer  # noqa: E402
from perf.inputs import load_tokenizer, prime_at_least, write_input_files  # noqa: E402
from perf.install import perf_analyzer_command  # noqa: E402
from perf.sweeps import MeasurementSettings  # noqa: E402
from perf.tune.apply import apply_settings, chosen_settings  # noqa: E402

BUILT = "built"   # the repository as given
# (model suffix, tokens, concurrency)
CASES = (("-fused", 16, 1), ("", 16, 1), ("-fused", 128, 1), ("", 16, 8))
SETTINGS = MeasurementSettings(interval_ms=3000, stability_percentage=50, max_trials=3)


def variant_repository(source: Path, target: Path, model: str, settings: dict[str, dict]) -> Path:
    """A copy of `source` with `settings` (model -> tuned fields) written into its configs."""
    shutil.copytree(source, target)
    if settings:
        apply_settings(target, settings, model)
    return target


def measure(server, name: str, inputs: dict[int, Path], work: Path) -> dict[str, list[float]]:
    """p50 ms and throughput per case; -1 where perf_analyzer gave no stable figure."""
    argv0, _ = perf_analyzer_command()
    row = {}
    for suffix, tokens, concurrency in CASES:
        csv_path = work / "out.csv"
        command = build_command(argv0, model=name + suffix, url=server.grpc_url, protocol="grpc",
                                input_data=inputs[tokens], batch_size=1, concurrency=concurrency,
                                settings=SETTINGS, csv_path=csv_path)
        run = run_perf_analyzer(command, csv_path, work / "perf_analyzer.log", timeout_s=120)
        result = run.rows[0] if run.ok else {}
        row[f"{name + suffix}@{tokens} conc {concurrency}"] = [round(result.get("p50_ms", -1), 2),
                                                              round(result.get("throughput", -1))]
    return row


def main() -> None:
    from serve import LocalTritonServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path)
    parser.add_argument("--results", type=Path, required=True, help="a folder `python -m perf tune` wrote")
    parser.add_argument("--configs", required=True, help="comma-separated config names from its report")
    parser.add_argument("--model", default="minilm-intent")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="settings-ab-"))
    tokenizer = load_tokenizer(ModelNames.of(args.model).tokenizer_json(args.repository))
    inputs = {n: write_input_files(tokenizer, n, prime_at_least(64), work / "inputs")["ensemble"] for n in (16, 128)}
    chosen = {BUILT: {}, **{name: chosen_settings(args.results, name) for name in args.configs.split(",")}}
    repositories = {name: variant_repository(args.repository, work / name, args.model, settings)
                    for name, settings in chosen.items()}
    results: dict[str, list] = {name: [] for name in chosen}
    try:
        for round_number in range(1, args.rounds + 1):
            for name, repository in repositories.items():
                with LocalTritonServer(repository) as server:
                    results[name].append(measure(server, args.model, inputs, work))
                print(f"round {round_number} {name}: {results[name][-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
