"""Whole builds through `python -m convert`, as a user runs them, and what they leave on disk."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo import read_config
from tests.conftest import run_convert
from tests.tiny_models import INTENTS, tiny_bert_classifier, tiny_distilbert

pytestmark = pytest.mark.build   # every test here runs python -m convert


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {"bert": tiny_bert_classifier(root / "tiny-bert"), "distilbert": tiny_distilbert(root / "tiny-distilbert")}


@pytest.fixture(scope="module")
def tiny_repository(tiny_checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "repo"
    run_convert(str(tiny_checkpoints["bert"]), "--name", "tiny", "--out", str(out), "--max-batch-size", "8")
    return out


# ------------------------------------------------------------------ the default model

@pytest.mark.slow
def test_minilm_intent_cpu_build_passes_the_gate_with_the_issue_figures(intent_repository):
    entry = _manifest(intent_repository)["models"]["minilm-intent"]
    assert entry["target"] == "cpu" and entry["precision"] == "int8" and entry["num_labels"] == 157
    reports = {r["variant"]: r for r in entry["validation"]}
    assert reports["fp32"]["part"] == "all" and reports["fp32"]["sentences"] >= 812
    assert reports["fp32"]["metrics"]["single_max_abs"] <= 1e-4
    assert reports["fp32"]["metrics"]["batch_vs_single_max_abs"] <= 1e-4
    int8 = reports["int8"]
    assert int8["passed"] and int8["part"] == "held-out" and int8["sentences"] >= 400
    assert int8["metrics"]["single_top1_agreement"] >= 0.99 and int8["metrics"]["batched_top1_agreement"] >= 0.99
    low, high = int8["intervals"]["single_top1_agreement"]
    assert low < int8["metrics"]["single_top1_agreement"] <= high
    assert entry["fusion"]["attention_fused"] and entry["fusion"]["fused"]["Attention"] == 6
    for folder in entry["folders"]:
        assert read_config(intent_repository / folder).name == folder


@pytest.mark.slow
def test_minilm_intent_build_reports_the_int8_choice_held_out_accuracy_and_speed(intent_repository):
    entry = _manifest(intent_repository)["models"]["minilm-intent"]
    choice = entry["int8_choice"]
    held_out, selection = choice["held_out"], choice["selection"]
    assert held_out["texts"] >= 400 and selection["texts"] >= 400
    assert held_out["ci95"][0] <= held_out["top1_agreement"] <= held_out["ci95"][1]
    assert isinstance(choice["fp32_nodes"], list) and len(choice["fp32_nodes"]) <= choice["search"]["units"] // 2
    assert choice["accuracy"]["texts"] >= 300
    assert all(0.7 < choice["accuracy"][who] <= 1 for who in ("reference", "fp32", "int8"))
    for length in ("16", "128"):
        speed = choice["speed"][length]
        assert speed["fp32_ms"] > 0 and speed["int8_ms"] > 0 and speed["full_int8_ms"] > 0
    assert choice["target"] == {"top1_agreement": 0.995, "cosine_min": 0.99, "speed_share": 0.8}
    assert choice["target_met"] == (not choice["target_missed_by"])
    assert entry["int8_scheme"] == ("mixed" if choice["fp32_nodes"] else "full")
    scales = choice["activation_scales"]    # every MatMul and Attention not kept in FP32 (24 in all)
    assert scales["per_tensor_operators"] == 0
    assert scales["per_token_projections"] == 24 - sum(not n.startswith("Embed") for n in choice["fp32_nodes"])
    assert choice["search"]["smoothing"]["alpha"] in (0.5, 0.65, 0.8)
    changed = choice["changed_answers"]      # the held-out answers INT8 changed, counted again
    assert changed["of"] == held_out["texts"]
    assert changed["texts"] == round((1 - held_out["top1_agreement"]) * held_out["texts"])
    assert (changed["largest_reference_margin"] is None) == (changed["texts"] == 0)


@pytest.mark.slow
def test_minilm_intent_repository_holds_tokenizer_encoder_and_ensemble(intent_repository):
    tokenizer = read_config(intent_repository / "minilm-intent-tokenizer")
    encoder = read_config(intent_repository / "minilm-intent-encoder")
    ensemble = read_config(intent_repository / "minilm-intent")
    assert (intent_repository / "minilm-intent-tokenizer/1/tokenizer.json").is_file()
    assert (intent_repository / "minilm-intent-encoder/1/model.onnx").is_file()
    assert tokenizer.parameters["max_length"].string_value == "128"
    # per-token INT8 runs whole batches; the gate checked that a batch equals its rows alone
    assert encoder.parameters["row_by_row"].string_value == "0"
    assert ensemble.max_batch_size == encoder.max_batch_size == tokenizer.max_batch_size == 32
    assert {o.name for o in ensemble.output} == {"LABEL", "SCORE", "PROBABILITIES"}
    labels = (intent_repository / "minilm-intent/labels.txt").read_text().splitlines()
    assert len(labels) == 157 and "car_rental" in labels and "translate" in labels
    assert next(o for o in ensemble.output if o.name == "PROBABILITIES").label_filename == "labels.txt"
    graph = onnx.load(str(intent_repository / "minilm-intent-encoder/1/model.onnx"), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "LabelEncoder" in ops and "MatMulIntegerToFloat" in ops     # the MatMuls, per-token scales
    kept = _manifest(intent_repository)["models"]["minilm-intent"]["int8_choice"]["fp32_nodes"]
    # Every Attention is per-token INT8 (then MultiHeadAttention) but those the search kept in FP32.
    fp32_attention = sum(n.op_type == "Attention" for n in graph.graph.node)
    assert fp32_attention == sum(name.startswith("Attention") for name in kept), kept
    assert sum(n.op_type == "MultiHeadAttention" for n in graph.graph.node) == 6 - fp32_attention
    assert not ops & {"QAttention", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}   # nothing per tensor


# ------------------------------------------------------------------ other checkpoints

def test_tiny_bert_classifier_builds_with_labels_from_id2label(tiny_repository):
    entry = _manifest(tiny_repository)["models"]["tiny"]
    assert entry["task"] == "text-classification" and entry["max_batch_size"] == 8
    assert (tiny_repository / "tiny/labels.txt").read_text().split() == INTENTS
    assert all(r["passed"] for r in entry["validation"])
    assert read_config(tiny_repository / "tiny").max_batch_size == 8


def test_distilbert_embedding_build_has_no_token_type_ids(tiny_checkpoints, tmp_path):
    out = tmp_path / "repo"
    run_convert(str(tiny_checkpoints["distilbert"]), "--name", "tiny-embed", "--out", str(out))
    encoder = read_config(out / "tiny-embed-encoder")
    assert [i.name for i in encoder.input] == ["input_ids", "attention_mask"]
    assert [(o.name, list(o.dims)) for o in encoder.output] == [("embedding", [32])]
    assert [o.name for o in read_config(out / "tiny-embed").output] == ["EMBEDDING"]
    reports = _manifest(out)["models"]["tiny-embed"]["validation"]
    int8 = next(r for r in reports if r["variant"] == "int8")
    assert int8["metrics"]["single_cosine_min"] >= 0.97


def test_gpu_target_writes_onnxruntime_backend_configs(tiny_checkpoints, tmp_path):
    out = tmp_path / "repo"
    run_convert(str(tiny_checkpoints["bert"]), "--name", "tiny", "--target", "gpu", "--no-tensorrt-plan",
                "--out", str(out))
    entry = _manifest(out)["models"]["tiny"]
    assert entry["precision"] == "fp16" and {r["variant"] for r in entry["validation"]} == {"fp32", "fp16", "plain"}
    encoder = read_config(out / "tiny-encoder")
    assert encoder.backend == "onnxruntime" and encoder.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert encoder.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    cuda = read_config(out / "tiny-encoder-cuda")
    assert not cuda.optimization.execution_accelerators.gpu_execution_accelerator
    # TensorRT gets the plain graph (standard ops only); CUDA alone gets the fused FP16 one.
    trt_ops = {n.domain for n in onnx.load(str(out / "tiny-encoder/1/model.onnx")).graph.node}
    cuda_ops = {n.domain for n in onnx.load(str(out / "tiny-encoder-cuda/1/model.onnx")).graph.node}
    assert "com.microsoft" not in trt_ops and "com.microsoft" in cuda_ops


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written

def _assert_clean_failure(result, message: str, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in " ".join(lines[-3:]), result.stderr
    assert not list(out.parent.glob(f".{out.name}-staging-*"))


def test_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_convert(str(tmp_path / "empty"), "--out", str(tmp_path / "repo"), check=False)
    _assert_clean_failure(result, "is not a Hugging Face checkpoint: it has no config.json", tmp_path / "repo")


def test_unsupported_architecture(tiny_checkpoints, tmp_path):
    folder = tmp_path / "gpt"
    shutil.copytree(tiny_checkpoints["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    result = run_convert(str(folder), "--out", str(tmp_path / "repo"), check=False)
    _assert_clean_failure(result, "architecture 'gpt2'", tmp_path / "repo")


def test_head_whose_width_does_not_match(tiny_checkpoints, tmp_path):
    from convert.source import resolve_model_spec

    head = resolve_model_spec("minilm-intent").head_path   # 384 features; the tiny encoder has 32
    result = run_convert(str(tiny_checkpoints["distilbert"]), "--head", str(head), "--out", str(tmp_path / "repo"),
                         check=False)
    _assert_clean_failure(result, "expects 384 input features but the encoder's pooled embedding has 32",
                          tmp_path / "repo")


def test_tensorrt_without_a_gpu_is_refused(tiny_checkpoints, tmp_path):
    from convert.tensorrt_engine import gpu_available

    if gpu_available():
        pytest.skip("this machine has a GPU: the TensorRT build would run")
    result = run_convert(str(tiny_checkpoints["bert"]), "--target", "gpu", "--out", str(tmp_path / "repo"), check=False)
    _assert_clean_failure(result, "TensorRT engines can only be built on a machine with an NVIDIA GPU",
                          tmp_path / "repo")
    assert not (tmp_path / "repo" / "manifest.json").exists()


def test_unwritable_output(tiny_checkpoints, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_convert(str(tiny_checkpoints["bert"]), "--out", str(blocker / "repo"), check=False)
    assert result.returncode == 2
    assert "cannot write the model repository" in result.stderr


def test_failed_build_leaves_the_previous_repository_intact(tiny_checkpoints, tiny_repository, tmp_path, monkeypatch):
    """A build that fails validation must not touch what was served before."""
    from convert import pipeline, validate
    from convert.errors import ConvertError
    from convert.source import resolve_model_spec

    out = tmp_path / "repo"
    shutil.copytree(tiny_repository, out)
    before = _snapshot(out)
    # An impossible limit makes the real gate fail on the real graph.
    strict = validate.Thresholds(max_abs=0.0, batch_max_abs=0.0, top1_agreement=None, cosine_mean=None, cosine_min=None)
    monkeypatch.setitem(validate.THRESHOLDS, "fp32", strict)
    spec = resolve_model_spec(str(tiny_checkpoints["bert"]), name="tiny")
    with pytest.raises(ConvertError, match="validation failed: fp32: single_max_abs"):
        pipeline.build(spec, pipeline.BuildOptions(out=out, max_batch_size=8))
    assert _snapshot(out) == before
    assert not list(tmp_path.glob(".repo-staging-*"))


def test_if_stale_skips_an_up_to_date_build(tiny_checkpoints, tiny_repository):
    result = run_convert(str(tiny_checkpoints["bert"]), "--name", "tiny", "--out", str(tiny_repository),
                         "--max-batch-size", "8", "--if-stale")
    assert "is up to date" in result.stderr


def test_int8_that_misses_the_gate_falls_back_to_fp32_or_fails_when_asked_for(tiny_checkpoints, tmp_path,
                                                                              monkeypatch):
    """A gate INT8 cannot meet (top-1 agreement above 100%): the default build serves FP32 and
    says why in the manifest; an explicit --precision int8 stops with the reason."""
    from dataclasses import replace

    from convert import validate
    from convert.errors import ConvertError
    from convert.pipeline import BuildOptions, build
    from convert.source import resolve_model_spec

    monkeypatch.setitem(validate.THRESHOLDS, "int8", replace(validate.THRESHOLDS["int8"], top1_agreement=1.01))
    spec = resolve_model_spec(str(tiny_checkpoints["bert"]), name="tiny")
    result = build(spec, BuildOptions(out=tmp_path / "repo", max_batch_size=8))
    entry = _manifest(tmp_path / "repo")["models"]["tiny"]
    assert entry["precision"] == "fp32" and "top1_agreement" in entry["int8_rejected"]
    assert [r.variant for r in result.reports] == ["fp32"]
    assert read_config(tmp_path / "repo" / "tiny-encoder").parameters["row_by_row"].string_value == "0"
    with pytest.raises(ConvertError, match="no INT8 variant passed the gate on the held-out texts"):
        build(spec, BuildOptions(out=tmp_path / "explicit", precision="int8", max_batch_size=8))


def test_int8_that_passes_on_selection_but_not_on_held_out_is_not_served(tiny_checkpoints, tmp_path, monkeypatch):
    """A real build whose held-out reference answers are made wrong (each logit row rolled by
    one class) while the selection part stays right: the search meets its target on the
    selection texts, and the gate, which grades the held-out texts, fails the variant."""
    from dataclasses import replace

    import numpy as np

    from convert import pipeline
    from convert.sentences import HELD_OUT
    from convert.source import resolve_model_spec

    subset = pipeline.ValidationSet.subset

    def wrong_on_held_out(self, part):
        chosen = subset(self, part)
        return replace(chosen, expected=np.roll(chosen.expected, 1, axis=-1)) if part == HELD_OUT else chosen

    monkeypatch.setattr(pipeline.ValidationSet, "subset", wrong_on_held_out)
    spec = resolve_model_spec(str(tiny_checkpoints["bert"]), name="tiny")
    pipeline.build(spec, pipeline.BuildOptions(out=tmp_path / "repo", max_batch_size=8))
    entry = _manifest(tmp_path / "repo")["models"]["tiny"]
    choice = entry["int8_choice"]
    assert choice["search"]["met_on_selection"] and choice["selection"]["top1_agreement"] == 1.0
    assert entry["precision"] == "fp32" and "single_top1_agreement" in entry["int8_rejected"]
    assert not choice["target_met"]
