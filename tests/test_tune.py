"""python -m perf tune: the Model Analyzer configs from the one search space, the report, apply,
and one short real Model Analyzer run on the local CPU server (skipped where .venv/analyzer is
missing: scripts/setup-analyzer.sh makes it)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import skip_without_tool
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo import ModelNames, read_config
from perf.errors import PerfError
from perf.tune.apply import apply_settings, chosen_settings, set_tuned_fields
from perf.tune.environment import AnalyzerTools, analyzer_venv
from perf.tune.report import best, rewrite_report
from perf.tune.results import TuneRow, rows_from_json, tuned_settings
from perf.tune.runner import AnalyzerRun, TuneOptions, analyzer_config
from perf.tune.space import GPU_CONFIG, PRESETS, gpu_config_text

NAMES = ModelNames.of("minilm-intent")
TOOLS = AnalyzerTools(Path("/opt/ma/bin/model-analyzer"), Path("/opt/triton/bin/tritonserver"),
                      Path("/opt/triton/backends"), Path("/opt/triton/caches"), Path("/opt/pa/perf_analyzer"), {})
INPUTS = {"ensemble": Path("/in/ensemble-16.json"), "encoder": Path("/in/encoder-16.json")}


def test_committed_gpu_config_is_the_one_generated_from_the_search_space():
    assert GPU_CONFIG.read_text() == gpu_config_text(), "run `python -m perf tune gpu-config` and commit"


def test_gpu_and_cpu_configs_search_the_same_space(tmp_path):
    full = PRESETS["full"]
    options = TuneOptions(tmp_path, "minilm-intent", tmp_path / "out", preset="full")
    cpu = analyzer_config(options, full, NAMES, AnalyzerRun(16, "brute", ("fused", "encoder"), tmp_path), INPUTS, TOOLS)
    gpu = yaml.safe_load(GPU_CONFIG.read_text())
    cpu_encoder = cpu["profile_models"][NAMES.encoder]
    gpu_encoder = gpu["profile_models"][NAMES.encoder]
    assert cpu_encoder["parameters"] == gpu_encoder["parameters"]
    for key in ("max_batch_size", "dynamic_batching"):
        assert cpu_encoder["model_config_parameters"][key] == gpu_encoder["model_config_parameters"][key]
    counts = {kind: [group[0]["count"] for group in config["model_config_parameters"]["instance_group"]]
              for kind, config in (("cpu", cpu_encoder), ("gpu", gpu_encoder))}
    assert counts["cpu"] == counts["gpu"] == list(full.instance_counts)
    # The ORT threading parameters exist only in the CPU build's Python-backend encoder.
    assert cpu_encoder["model_config_parameters"]["parameters"]["spin"] == {"string_value": ["0", "1"]}
    assert "parameters" not in gpu_encoder["model_config_parameters"]


def test_cpu_config_runs_the_local_server_with_each_models_exact_length_inputs(tmp_path):
    quick = PRESETS["quick"]
    options = TuneOptions(tmp_path, "minilm-intent", tmp_path / "out", budget_p99_ms=20)
    config = analyzer_config(options, quick, NAMES, AnalyzerRun(16, "brute", ("fused", "encoder"), tmp_path),
                             INPUTS, TOOLS)
    assert config["triton_launch_mode"] == "local" and config["run_config_search_disable"] is True
    assert config["constraints"] == {"perf_latency_p99": {"max": 20}}
    assert len({config["triton_http_endpoint"], config["triton_grpc_endpoint"], config["triton_metrics_url"]}) == 3
    fused, encoder = config["profile_models"][NAMES.fused], config["profile_models"][NAMES.encoder]
    assert fused["cpu_only"] and encoder["cpu_only"]
    assert fused["perf_analyzer_flags"]["input-data"] == "/in/ensemble-16.json"     # text in
    assert encoder["perf_analyzer_flags"]["input-data"] == "/in/encoder-16.json"    # token tensors in
    assert fused["model_config_parameters"]["dynamic_batching"]["max_queue_delay_microseconds"] == [0, 500]
    assert "row_by_row" not in fused["model_config_parameters"]["parameters"]       # correctness, not tuned


def test_ensemble_is_searched_by_model_analyzers_quick_search_within_the_preset_bounds(tmp_path):
    quick = PRESETS["quick"]
    options = TuneOptions(tmp_path, "minilm-intent", tmp_path / "out")
    inputs = {"ensemble": Path("/in/ensemble-128.json"), "encoder": Path("/in/encoder-128.json")}
    run = AnalyzerRun(128, "ensemble", ("ensemble",), tmp_path)
    config = analyzer_config(options, quick, NAMES, run, inputs, TOOLS)
    assert config["run_config_search_mode"] == "quick" and "run_config_search_disable" not in config
    assert config["cpu_only_composing_models"] == [NAMES.tokenizer, NAMES.encoder]
    assert (config["run_config_search_min_instance_count"], config["run_config_search_max_instance_count"]) == (1, 2)
    ensemble = config["profile_models"][NAMES.ensemble]
    assert "parameters" not in ensemble   # quick search refuses concurrency and batch lists
    assert ensemble["perf_analyzer_flags"]["input-data"] == "/in/ensemble-128.json"


def test_unknown_preset_or_model_is_refused_with_the_choices(tmp_path):
    with pytest.raises(PerfError, match="smoke, quick, full"):
        _ = TuneOptions(tmp_path, "minilm-intent", tmp_path, preset="fast").space


def _row(variant: str, avg: float, p99: float, throughput: float, concurrency: int = 1) -> TuneRow:
    return TuneRow(tokens=16, role="fused", variant=variant, batch_size=1, concurrency=concurrency, settings={},
                   throughput=throughput, avg_ms=avg, p90_ms=p99, p95_ms=p99, p99_ms=p99,
                   server_queue_ms=0.1, server_compute_infer_ms=avg / 2)


def test_best_config_keeps_to_the_p99_budget_and_measures_latency_at_concurrency_1():
    rows = [_row("a", avg=3.0, p99=9.0, throughput=300), _row("b", avg=2.5, p99=30.0, throughput=350),
            _row("c", avg=4.0, p99=6.0, throughput=250), _row("d", avg=20.0, p99=25.0, throughput=900, concurrency=8)]
    assert best(rows, "latency", budget_p99_ms=10).variant == "a"     # b is faster but over budget
    assert best(rows, "p99", budget_p99_ms=10).variant == "c"
    assert best(rows, "throughput", budget_p99_ms=10).variant == "a"  # d is over budget
    assert best(rows, "throughput", budget_p99_ms=40).variant == "d"
    assert best(rows, "latency", budget_p99_ms=1) is None


def test_set_tuned_fields_changes_exactly_the_chosen_fields(intent_repository):
    built = read_config(intent_repository / NAMES.fused)
    config = mc.ModelConfig()
    config.CopyFrom(built)
    fields = {**tuned_settings(built), "instance_count": 2, "intra_op_threads": "1"}
    assert set_tuned_fields(config, fields) == ["instance_group", "parameters.intra_op_threads"]
    built.instance_group[0].count = 2
    built.parameters["intra_op_threads"].string_value = "1"
    assert config == built


def test_apply_lowers_the_ensembles_batch_to_its_steps(intent_repository, tmp_path):
    repository = shutil.copytree(intent_repository, tmp_path / "repo")   # built with convert's defaults
    encoder = tuned_settings(read_config(repository / NAMES.encoder))
    changed = apply_settings(repository, {NAMES.encoder: {**encoder, "max_batch_size": 8}}, "minilm-intent")
    assert changed == {NAMES.encoder: ["max_batch_size"], NAMES.ensemble: ["max_batch_size"]}
    assert read_config(repository / NAMES.ensemble).max_batch_size == 8
    assert read_config(repository / NAMES.fused) == read_config(intent_repository / NAMES.fused)


# --- one short real run -------------------------------------------------------------------

@pytest.mark.live
@pytest.mark.slow
def test_a_real_model_analyzer_run_is_reported_and_its_config_applies_and_loads(intent_repository, tmp_path):
    """The smoke preset (the built fused config and one other, 16 tokens, concurrency 1): about a
    minute of Model Analyzer on the local server; then its config into a copy of the repository."""
    if not (analyzer_venv() / "bin" / "model-analyzer").is_file():
        skip_without_tool(f"no Model Analyzer in {analyzer_venv()}: run scripts/setup-analyzer.sh")
    from perf.tune.runner import tune

    out = tmp_path / "tune"
    report = tune(TuneOptions(intent_repository, "minilm-intent", out, preset="smoke", budget_p99_ms=1000))
    document = json.loads((out / "tune.json").read_text())
    variants = {row["variant"]: row for row in document["rows"]}
    assert set(variants) == {f"{NAMES.fused}_config_default", f"{NAMES.fused}_config_0"}
    tried = variants[f"{NAMES.fused}_config_0"]
    assert tried["settings"][NAMES.fused]["intra_op_threads"] == "1"     # the smoke space's one config
    assert tried["settings"][NAMES.fused]["instance_count"] == 1
    assert 0 < tried["avg_ms"] <= tried["p99_ms"] and tried["throughput"] > 0
    for row in rows_from_json(document):   # the records land in the right fields
        assert row.p90_ms <= row.p95_ms <= row.p99_ms and row.server_compute_infer_ms < row.avg_ms
    assert f"`{NAMES.fused}_config_" in report.read_text()
    assert (out / "ma" / "16-brute" / "export").is_dir()   # Model Analyzer's own reports beside ours
    assert not (out / "ma" / "16-brute" / "output_repository").exists()   # its model copy, removed
    written = report.read_text()
    assert rewrite_report(out).read_text() == written      # `tune report` rewrites it from tune.json alone

    repository = shutil.copytree(intent_repository, tmp_path / "repo")   # built with convert's defaults
    settings = chosen_settings(out, f"{NAMES.fused}_config_0")
    assert apply_settings(repository, settings, "minilm-intent") == {NAMES.fused: ["parameters.intra_op_threads"]}
    from serve import LocalTritonServer

    with LocalTritonServer(repository, model_control="explicit", load_models=[NAMES.fused]) as server:
        assert NAMES.fused in server.ready_models()


def _stand_in(tmp_path: Path, body: str) -> AnalyzerTools:
    """A shell script in Model Analyzer's place: what run_model_analyzer does with a process that
    hangs or fails, which the real one does not do on demand."""
    script = tmp_path / "model-analyzer"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return AnalyzerTools(script, *(tmp_path,) * 4, environment={"PATH": "/usr/bin:/bin"})


def test_a_run_over_its_time_is_stopped_with_what_it_started(tmp_path):
    import time

    from perf.tune.runner import run_model_analyzer

    started = time.monotonic()
    with pytest.raises(PerfError, match="ran over 1 s and was stopped"):
        run_model_analyzer(_stand_in(tmp_path, "echo profiling; sleep 60"), {}, tmp_path / "run", timeout_s=1)
    assert time.monotonic() - started < 30   # the sleeping child went with it: nothing held the pipe


def test_a_failed_run_names_its_error_and_logs(tmp_path):
    from perf.tune.runner import run_model_analyzer

    tools = _stand_in(tmp_path, "echo '[Model Analyzer] ERROR: no model named foo'; exit 1")
    with pytest.raises(PerfError, match=r"exit 1\): \[Model Analyzer\] ERROR: no model named foo; its log: .*"):
        run_model_analyzer(tools, {}, tmp_path / "run", timeout_s=60)
    assert (tmp_path / "run" / "config.yaml").is_file()


@pytest.mark.parametrize("preset", ["smoke", "quick"])
def test_small_presets_keep_the_builds_spin_setting(preset):
    """They search threads, instances and batching; spinning stays what convert builds."""
    from convert.pipeline import BuildOptions

    assert PRESETS[preset].spin == (BuildOptions.__dataclass_fields__["spin"].default,)
