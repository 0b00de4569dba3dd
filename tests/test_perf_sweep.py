"""python -m perf run: sweep files, the perf_analyzer install, the echo model, results and a short real run.

The run test drives the whole runner against the real tritonserver serving the built
minilm-intent repository, with a tiny sweep (half-second windows), then checks that the
CSV perf_analyzer wrote was parsed, and that the report and plots were made from it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from modelrepo import read_config
from perf import analyzer, install, sweeps
from perf.errors import PerfError
from perf.models import copy_without_dynamic_batching, resolve_model


@pytest.mark.parametrize("preset", ["quick", "full", "gpu-t4"])
def test_presets_load_and_cover_the_issue_dimensions(preset: str) -> None:
    sweep = sweeps.load_sweep(preset)
    runtimes = {spec.runtime for spec in sweep.runs}
    assert {"triton-ensemble", "triton-encoder", "onnxruntime", "pytorch"} <= runtimes
    assert {16, 128} <= {spec.seq_len for spec in sweep.runs}
    assert len({spec.key for spec in sweep.runs}) == len(sweep.runs)
    if preset == "full":
        assert {1, 8, 32} <= {spec.batch_size for spec in sweep.runs}
        assert {"grpc", "http"} <= {spec.protocol for spec in sweep.runs}
        assert {"on", "off"} <= {spec.dynamic_batching for spec in sweep.runs}
        assert "system" in {spec.shared_memory for spec in sweep.runs}


def test_malformed_sweep_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": [{"runtime": "pytorch", "concurrency": [1, 4]}]}))
    with pytest.raises(sweeps.SweepError, match="concurrency must be 1"):
        sweeps.load_sweep(str(bad))
    bad.write_text(yaml.safe_dump({"runs": [{"runtime": "triton-ensemble", "protocl": "grpc"}]}))
    with pytest.raises(sweeps.SweepError, match="protocl"):
        sweeps.load_sweep(str(bad))


def test_installer_finds_a_working_perf_analyzer() -> None:
    binary = install.install()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert install.is_installed()
    argv0, env = install.perf_analyzer_command()
    assert argv0 == str(binary)
    result = subprocess.run([argv0, "--version"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "2.41.0" in result.stdout + result.stderr
    wrapper = subprocess.run([str(install.wrapper_path()), "--version"], capture_output=True, text=True)
    assert wrapper.returncode == 0 and "2.41.0" in wrapper.stdout + wrapper.stderr


def test_copy_without_dynamic_batching_keeps_everything_else(intent_repository: Path, tmp_path: Path) -> None:
    copy = copy_without_dynamic_batching(intent_repository, tmp_path / "nodb")
    originals = sorted(p.parent.name for p in intent_repository.glob("*/config.pbtxt"))
    assert sorted(p.parent.name for p in copy.glob("*/config.pbtxt")) == originals
    batched = 0
    for name in originals:
        original = text_format.Parse((intent_repository / name / "config.pbtxt").read_text(),
                                     model_config_pb2.ModelConfig())
        copied = text_format.Parse((copy / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        batched += original.HasField("dynamic_batching")
        assert not copied.HasField("dynamic_batching")
        original.ClearField("dynamic_batching")
        assert copied == original
    assert batched >= 1, "the built repository should batch dynamically somewhere"


def tiny_sweep(path: Path, runs: list[dict]) -> Path:
    """A sweep file with half-second windows. Loose stability: the tests check the plumbing,
    not the figures, on a busy CI machine."""
    path.write_text(yaml.safe_dump({
        "name": path.stem,
        "measurement": {"interval_ms": 500, "max_trials": 10, "stability_percentage": 60, "baseline_seconds": 0.5,
                        "warmup_requests": 2, "texts_per_length": 8},
        "runs": runs,
    }))
    return path


@pytest.mark.slow
def test_short_real_run_gives_parsed_csv_results_and_a_report(intent_repository: Path, tmp_path: Path) -> None:
    from perf.runner import RunOptions, run

    sweep_file = tiny_sweep(tmp_path / "tiny.yaml", [
        {"runtime": ["onnxruntime", "pytorch", "fastapi"], "seq_len": 16},
        {"runtime": "triton-ensemble", "protocol": "grpc", "seq_len": 16, "concurrency": [1, 2]},
        {"runtime": "triton-encoder", "protocol": "http", "seq_len": 16},
        {"runtime": ["triton-echo", "triton-fused"], "protocol": "grpc", "seq_len": 16},
    ])
    out = run(RunOptions(str(sweep_file), intent_repository, "minilm-intent", tmp_path / "results"))

    document = json.loads((out / "results.json").read_text())
    runs = {(r["runtime"], r["protocol"], r["concurrency"]): r for r in document["runs"]}
    assert len(runs) == 8
    failed = [(key, r.get("error")) for key, r in runs.items() if r["status"] != "ok"]
    assert not failed, failed
    assert document["machine"]["cpu_count"] >= 1 and "2.41.0" in document["machine"]["perf_analyzer"]

    # Each Triton row is what perf_analyzer wrote in its CSV, converted from us to ms.
    ensemble = runs[("triton-ensemble", "grpc", 1)]
    raw_rows = list(csv.DictReader((out / "raw" / "triton-ensemble_grpc_s16_b1_c1.csv").open()))
    assert len(raw_rows) == 1 and int(raw_rows[0]["Concurrency"]) == 1
    assert ensemble["p99_ms"] == pytest.approx(float(raw_rows[0]["p99 latency"]) / 1000)
    assert ensemble["throughput"] == pytest.approx(float(raw_rows[0]["Inferences/Second"]))
    assert analyzer.parse_csv(out / "raw" / "triton-encoder_http_s16_b1_c1.csv")[0]["concurrency"] == 1
    for result in runs.values():
        assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
        assert result["throughput"] > 0

    report = (out / "report.md").read_text()
    floor = runs[("onnxruntime", "inprocess", 1)]["p50_ms"]
    assert f"| {ensemble['p50_ms']:.2f} |" in report
    assert f"| {ensemble['p50_ms'] / floor:.2f}x |" in report  # ratio to the in-process floor
    for plot in ("latency_by_seq_len.png", "throughput_vs_concurrency.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8
    # The echo model was served beside the repository, and the breakdown was computed from the rows.
    echo, fused = runs[("triton-echo", "grpc", 1)], runs[("triton-fused", "grpc", 1)]
    assert echo["model"] == "perf-echo"
    assert (f"| 16 | {floor:.2f} | {echo['p50_ms']:.2f} | {fused['p50_ms']:.2f} | {fused['p50_ms'] - floor:+.2f} "
            f"| {ensemble['p50_ms']:.2f} | {ensemble['p50_ms'] - fused['p50_ms']:+.2f} |") in report


@pytest.mark.live
def test_echo_model_returns_its_texts_unchanged_over_grpc_and_http(tmp_path: Path) -> None:
    import numpy as np
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    from perf.echo import ECHO_MODEL, write_echo_repository
    from serve import LocalTritonServer

    unbatched = write_echo_repository(tmp_path / "echo-nodb", max_batch_size=4, dynamic_batching=False)
    assert not read_config(unbatched / ECHO_MODEL).HasField("dynamic_batching")
    repository = write_echo_repository(tmp_path / "echo", max_batch_size=4)
    config = read_config(repository / ECHO_MODEL)
    assert config.max_batch_size == 4 and config.dynamic_batching.max_queue_delay_microseconds == 0
    texts = np.array([["set an alarm"], ["héllo wörld ✓"], ["x" * 5000]], dtype=object)
    with LocalTritonServer(repository) as server:
        for module, url in ((grpc_client, server.grpc_url), (http_client, server.http_url)):
            client = module.InferenceServerClient(url)
            request = module.InferInput("TEXT", list(texts.shape), "BYTES")
            request.set_data_from_numpy(texts)
            echoed = client.infer(ECHO_MODEL, [request]).as_numpy("ECHO")
            assert [item.decode() for item in echoed.reshape(-1)] == [t for t in texts.reshape(-1)]


def test_echo_is_skipped_on_a_server_the_runner_did_not_start(intent_repository: Path, tmp_path: Path) -> None:
    from perf.runner import _measure_triton
    from perf.triton import TritonServer

    spec = sweeps.RunSpec("triton-echo", 16, 1, 1, "grpc", "none", "on")
    external = (TritonServer("127.0.0.1:1", None, None, started_here=False), False)
    result = _measure_triton(spec, resolve_model(intent_repository, "minilm-intent"), external, {},
                             sweeps.load_sweep("quick"), tmp_path)
    assert result["status"] == "skipped" and "perf-echo is served only by the runner" in result["error"]


def test_breakdown_subtracts_within_one_run() -> None:
    from perf.report import time_breakdown_table

    def run(runtime: str, p50: float, protocol: str = "grpc") -> dict:
        return {"status": "ok", "runtime": runtime, "protocol": protocol, "seq_len": 16, "batch_size": 1,
                "concurrency": 1, "dynamic_batching": "on", "p50_ms": p50}

    runs = [run("onnxruntime", 1.5, "inprocess"), run("triton-echo", 0.4), run("triton-fused", 2.25),
            run("triton-ensemble", 3.0)]
    assert time_breakdown_table(runs).splitlines()[2] == "| 16 | 1.50 | 0.40 | 2.25 | +0.75 | 3.00 | +0.75 |"
    # Runs that are not the batch-1, dynamic-batching-on, concurrency-1 measurement are not taken.
    others = [run("triton-ensemble", 9.0) | {"dynamic_batching": "off"},
              run("triton-ensemble", 9.0) | {"concurrency": 8},
              run("triton-fused", 9.0, "http")]
    assert time_breakdown_table(others + runs) == time_breakdown_table(runs)
    # The echo is optional (absent against an external server, or failed); the rest is needed.
    failed_echo = {"status": "failed", "runtime": "triton-echo", "error": "no stub"}
    assert time_breakdown_table([failed_echo] + [r for r in runs if r["runtime"] != "triton-echo"]).splitlines()[2] \
        == "| 16 | 1.50 | - | 2.25 | +0.75 | 3.00 | +0.75 |"
    assert time_breakdown_table(runs[:3]) == ""  # no ensemble run: no row to show
    # Over rounds, differences are taken within each round: (2.0-1.0, 2.5-2.0, 4.0-1.2) -> median 1.0.
    rounds = [runs[0] | {"rounds_p50_ms": [1.0, 2.0, 1.2]}, runs[2] | {"rounds_p50_ms": [2.0, 2.5, 4.0]}, runs[3]]
    assert "| +1.00 |" in time_breakdown_table(rounds).splitlines()[2]


def test_echo_rows_carry_no_ratios() -> None:
    from perf.report import markdown_table

    runs = [{"status": "ok", "runtime": runtime, "protocol": protocol, "seq_len": 16, "batch_size": 1,
             "concurrency": 1, "dynamic_batching": "on", "p50_ms": p50, "p95_ms": p50, "p99_ms": p50,
             "throughput": 1000 / p50}
            for runtime, protocol, p50 in (("onnxruntime", "inprocess", 2.0), ("pytorch", "inprocess", 10.0),
                                           ("triton-echo", "grpc", 0.5), ("triton-fused", "grpc", 2.5))]
    rows = {line.split(" | ")[0]: line for line in markdown_table(runs).splitlines()[2:]}
    assert rows["| Triton Python model that does no work (echo)"].endswith("| - | - |")
    assert rows["| Triton fused model"].endswith("| 1.25x | 4.00x |")


def test_merge_rounds_takes_medians_of_the_rounds_that_succeeded() -> None:
    from perf.results import merge_rounds

    def ok(p50: float, throughput: float) -> dict:
        return {"status": "ok", "tool": "perf_analyzer", "p50_ms": p50, "p99_ms": 2 * p50, "throughput": throughput,
                "requests": 100, "model": "m"}

    failed = {"status": "failed", "tool": "perf_analyzer", "error": "unstable", "model": "m"}
    merged = merge_rounds([ok(3.0, 300.0), failed, ok(1.0, 500.0), ok(2.0, 400.0)])
    assert (merged["p50_ms"], merged["p99_ms"], merged["throughput"]) == (2.0, 4.0, 400.0)
    assert merged["requests"] == 300 and merged["status"] == "ok"
    assert merged["rounds_p50_ms"] == [3.0, None, 1.0, 2.0]
    assert merge_rounds([ok(1.5, 9.0)]) == ok(1.5, 9.0)  # one round: the result as it was
    assert merge_rounds([failed, failed])["status"] == "failed"


@pytest.mark.slow
def test_rounds_repeat_the_sweep_and_report_medians(intent_repository: Path, tmp_path: Path) -> None:
    from perf.runner import RunOptions, run

    sweep_file = tiny_sweep(tmp_path / "rounds.yaml", [{"runtime": ["onnxruntime", "triton-echo"], "seq_len": 16}])
    out = run(RunOptions(str(sweep_file), intent_repository, "minilm-intent", tmp_path / "results", rounds=2))
    document = json.loads((out / "results.json").read_text())
    assert document["rounds"] == 2 and len(document["runs"]) == 2
    for result in document["runs"]:
        assert result["status"] == "ok", result.get("error")
        first, second = result["rounds_p50_ms"]
        assert result["p50_ms"] == pytest.approx((first + second) / 2)  # the median of two
    for number in (1, 2):  # each round's perf_analyzer output is kept apart
        assert analyzer.parse_csv(out / "rounds" / str(number) / "raw" / "triton-echo_grpc_s16_b1_c1.csv")
    assert len(document["servers"]) == 1  # the same server, started once a round, described once
    report = (out / "report.md").read_text()
    assert "ran 2 times" in report and "p50 by round |" in report


def test_resolve_model_names_the_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(PerfError, match="python -m convert"):
        resolve_model(tmp_path / "nowhere", "minilm-intent")


def test_settings_ab_variants_edit_only_the_models_a_tuned_config_names(intent_repository, tmp_path):
    from perf.tune.results import tuned_settings
    from scripts.settings_ab import variant_repository

    chosen = {}
    for model in ("minilm-intent-encoder", "minilm-intent-fused"):
        built = tuned_settings(read_config(intent_repository / model))
        chosen[model] = {**built, "instance_count": 2, "intra_op_threads": "1", "spin": "0"}
    copy = variant_repository(intent_repository, tmp_path / "repo", "minilm-intent", chosen)
    for model in ("minilm-intent-encoder", "minilm-intent-fused"):
        config = read_config(copy / model)
        assert config.instance_group[0].count == 2
        assert config.parameters["intra_op_threads"].string_value == "1"
        assert config.parameters["spin"].string_value == "0"
    assert read_config(copy / "minilm-intent-tokenizer") == read_config(intent_repository / "minilm-intent-tokenizer")
