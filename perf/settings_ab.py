"""A/B of server-side settings: copies of one repository with edited configs, each served
in turn and measured with perf_analyzer, round after round, so that machine noise hits
every variant alike. The figures in perf/NOTES.md ("Server-side settings") come from:

    .venv/bin/python -m perf.settings_ab triton_models --rounds 2

Variants edit the encoder and fused models' config.pbtxt (ModelConfig protobuf):
dynamic-batching queue delay, ORT intra-op threads, spinning, instance count.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format

from .stages import local_server_class, read_config
from .analyzer import build_command, run_perf_analyzer
from .inputs import load_tokenizer, prime_at_least, write_input_files
from .install import perf_analyzer_command
from .sweeps import MeasurementSettings

VARIANTS = {
    "before": {"queue": 100, "spin": "0"},
    "q0": {"queue": 0, "spin": "0"},
    "q0_t1": {"queue": 0, "intra_op_threads": "1", "spin": "0"},
    "q0_spin": {"queue": 0, "spin": "1"},
    "q0_t1_spin": {"queue": 0, "intra_op_threads": "1", "spin": "1"},
    "q0_t1_x2": {"queue": 0, "intra_op_threads": "1", "spin": "0", "instances": 2},
}
# (model suffix, tokens, concurrency)
CASES = (("-fused", 16, 1), ("", 16, 1), ("-fused", 128, 1), ("", 16, 8))
SETTINGS = MeasurementSettings(interval_ms=3000, stability_percentage=50, max_trials=3)


def variant_repository(source: Path, target: Path, name: str, change: dict) -> Path:
    """A copy of `source` whose encoder and fused configs carry `change`."""
    shutil.copytree(source, target)
    for model in (f"{name}-encoder", f"{name}-fused"):
        config = read_config(target / model)
        config.dynamic_batching.max_queue_delay_microseconds = change["queue"]
        if "instances" in change:
            config.instance_group[0].count = change["instances"]
        for key in ("intra_op_threads", "spin"):
            if key in change:
                config.parameters[key].string_value = change[key]
        (target / model / "config.pbtxt").write_text(text_format.MessageToString(config))
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
    LocalTritonServer = local_server_class()

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="minilm-intent")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="settings-ab-"))
    tokenizer = load_tokenizer(args.repository / f"{args.model}-tokenizer/1/tokenizer.json")
    inputs = {n: write_input_files(tokenizer, n, prime_at_least(64), work / "inputs")["ensemble"] for n in (16, 128)}
    chosen = {name: VARIANTS[name] for name in args.variants.split(",")}
    repositories = {name: variant_repository(args.repository, work / name, args.model, change)
                    for name, change in chosen.items()}
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
