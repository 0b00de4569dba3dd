"""python -m perf.gap: A/B copies of served models, the paired ratios, a short real run; and the
encoder's default of not spinning that the gap's measurements chose (docs/throughput.md)."""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert import triton_config as tc
from convert.__main__ import parse_args
from modelrepo import ModelNames, config_parameters, read_config, write_config
from perf.errors import PerfError
from perf.gap.measure import GapRun
from perf.gap.report import breakdown_rows, summarize
from perf.gap.study import gap
from perf.gap.variants import ServerChange, grpc_call, repository_with_changes

# ------------------------------------------------------------------ the spinning default


def test_the_cpu_encoder_does_not_spin_unless_asked():
    assert parse_args(["minilm-embed"]).spin is False
    assert parse_args(["minilm-embed", "--spin"]).spin is True
    assert parse_args(["minilm-embed", "--no-spin"]).spin is False


# ------------------------------------------------------------------ the command line

ROOT = Path(__file__).resolve().parents[1]


def _options(*command: str) -> set[str]:
    """The options a command's --help lists, run as a user runs it."""
    result = subprocess.run([sys.executable, "-m", *command, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"{' '.join(command)} --help: {result.stdout}{result.stderr}"
    return set(re.findall(r"(?m)^ {2}(-{1,2}[\w-]+)", result.stdout))


def test_perf_gap_is_a_perf_subcommand_with_the_options_of_python_m_perf_gap():
    subcommand = _options("perf", "gap")
    assert {"--model-repository", "--seconds", "--ab", "--clients", "--only"} <= subcommand
    assert subcommand == _options("perf.gap")


def test_a_malformed_ab_is_a_usage_error_that_names_the_option():
    result = subprocess.run([sys.executable, "-m", "perf", "gap", "--ab", "nospin"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "argument --ab" in result.stderr and "NAME:key=value" in result.stderr, \
        result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ A/B copies


def test_server_change_reads_name_and_parameters_and_refuses_what_it_cannot_read():
    change = ServerChange.parse("fast:spin=1,intra_op_threads=2")
    assert change == ServerChange("fast", {"spin": "1", "intra_op_threads": "2"})
    for bad in ("nospin", "nospin:", ":spin=0", "nospin:spin"):
        with pytest.raises(PerfError, match="NAME:key=value"):
            ServerChange.parse(bad)


def _tiny_repository(root):
    """Configs of an ensemble, its encoder and its fused model, written as the build writes them."""
    names = ModelNames.of("m")
    tokens = [tc.Tensor("input_ids", tc.INT64, (-1,))]
    outputs = [tc.Tensor("embedding", tc.FP32, (4,))]
    encoder = tc.cpu_encoder_config(names.encoder, tokens, outputs, tc.Batching(8, 0), onnx_file="model.onnx",
                                    intra_op_threads=0, spin=False, warmup_files={"input_ids": "input_ids"},
                                    warmup_length=3)
    fused = tc.text_model_config(names.fused, outputs, tc.Batching(8, 0), {"spin": 0, "max_length": 16})
    ensemble = tc.ensemble_config(names.ensemble, tokenizer=names.tokenizer, encoder=names.encoder,
                                  token_tensors=["input_ids"], outputs={"embedding": tc.Tensor("E", tc.FP32, (4,))},
                                  max_batch_size=8, parameters={})
    for config in (encoder, fused, ensemble):
        (root / config.name / "1").mkdir(parents=True)
        (root / config.name / "1" / "model.py").write_text("# served code\n")
        write_config(config, root / config.name)
    return names


def test_changed_copies_differ_in_parameters_only_and_the_ensemble_uses_the_copied_encoder(tmp_path):
    names = _tiny_repository(tmp_path / "repo")
    served = repository_with_changes(tmp_path / "repo", names, [ServerChange("spin", {"spin": "1"})], tmp_path / "ab")
    for folder in (names.encoder, names.fused):
        original, copy = read_config(served / folder), read_config(served / f"{folder}-spin")
        assert copy.name == f"{folder}-spin"
        assert config_parameters(original)["spin"] == "0" and config_parameters(copy)["spin"] == "1"
        copy.name, copy.parameters["spin"].string_value = original.name, "0"
        assert copy == original
        assert (served / f"{folder}-spin" / "1" / "model.py").read_text() == "# served code\n"
    steps = read_config(served / f"{names.ensemble}-spin").ensemble_scheduling.step
    assert [step.model_name for step in steps] == [names.tokenizer, f"{names.encoder}-spin"]


def test_a_parameter_the_model_does_not_have_is_refused_with_the_ones_it_has(tmp_path):
    names = _tiny_repository(tmp_path / "repo")
    with pytest.raises(PerfError, match="no parameter spinning.*intra_op_threads"):
        repository_with_changes(tmp_path / "repo", names, [ServerChange("x", {"spinning": "1"})], tmp_path / "ab")


# ------------------------------------------------------------------ the report's arithmetic


def _sample(variant, turn, wall_s, stats=None):
    return {"variant": variant, "tokens": 16, "turn": turn, "requests": 2, "wall_s": wall_s,
            "client_cpu_s": 0.2, "server_cpu_s": 0.0, "stats": stats or {}}


def test_ratios_are_paired_turn_by_turn_with_ort():
    run = GapRun("m", [16], seconds=1, block=3, batch=32)
    # ort slows down tenfold in turn 1; the served variant is half as fast as ort in every turn.
    run.samples = [_sample("ort", 0, 1.0), _sample("served", 0, 2.0),
                   _sample("ort", 1, 10.0), _sample("served", 1, 20.0),
                   _sample("ort", 2, 1.0), _sample("served", 2, 2.0)]
    rows = {row["variant"]: row for row in summarize(run)}
    assert rows["served"]["paired_ratio_median"] == pytest.approx(0.5)
    assert rows["served"]["ratio_to_ort"] == pytest.approx(0.5)
    assert rows["ort"]["texts_per_s"] == pytest.approx(32 * 6 / 12.0)
    assert rows["served"]["client_cpu_ms"] == pytest.approx(100.0)


def test_breakdown_divides_server_time_by_the_requests_triton_counted():
    stats = {"enc": {"requests": 3, "executions": 3, "request_ns": 30_000_000, "queue_ns": 3_000_000,
                     "compute_input_ns": 0, "compute_infer_ns": 24_000_000, "compute_output_ns": 3_000_000}}
    run = GapRun("m", [16], seconds=1, block=3, batch=32)
    run.samples = [_sample("served", 0, 1.0, stats), _sample("served", 1, 1.0, stats)]
    (row,) = breakdown_rows(run)
    assert row["requests"] == 6 and row["request_ms"] == pytest.approx(10.0)
    assert row["compute_infer_ms"] == pytest.approx(8.0) and row["texts_per_execution"] == pytest.approx(32)


# ------------------------------------------------------------------ a short real run


@pytest.mark.slow
def test_a_short_run_measures_every_variant_and_the_copy_answers_as_the_original(embed_repository, tmp_path):
    out = tmp_path / "gap"
    report = gap(embed_repository, "minilm-embed", out, lengths=[16], batch=4, seconds=0.0, block=2,
                 changes=[ServerChange("spin", {"spin": "1"})], concurrency=(1,), only=["ensemble grpc", "ort-"])
    assert report == out / "gap.md" and "| ensemble grpc [spin] | 16 |" in report.read_text()
    rows = {row["variant"]: row for row in csv.DictReader((out / "gap.csv").open())}
    assert set(rows) == {"ort", "ort-served", "ensemble grpc", "ensemble grpc [spin]"}
    assert all(float(row["texts_per_s"]) > 0 for row in rows.values())
    models = {row["model"] for row in csv.DictReader((out / "breakdown.csv").open())}
    assert {"minilm-embed-encoder", "minilm-embed-encoder-spin", "minilm-embed-tokenizer"} <= models
    # The A/B copy is the same model with another thread setting: the same answers.
    from serve import LocalTritonServer

    texts = ["set an alarm for 7am", "what is the weather in Paris tomorrow afternoon"]
    with LocalTritonServer(out / "repository") as server:
        original = grpc_call(server.grpc_url, "minilm-embed", "EMBEDDING")(texts)
        copied = grpc_call(server.grpc_url, "minilm-embed-spin", "EMBEDDING")(texts)
    np.testing.assert_allclose(copied, original, atol=1e-5)
