"""python -m perf arch: the study's configurations, its grid, and one real run of the smallest model.

The run builds BERT-tiny (random weights) with convert, measures every runtime once at
16 tokens (PyTorch, TorchScript, ONNX Runtime FP32 and INT8, Triton fused and ensemble on
the real tritonserver) and checks the report it writes: under a minute on 2 cores.
"""
from __future__ import annotations

import csv
import json

import pytest

from perf.arch.configs import ARCHITECTURES, BY_KEY, RANDOM_LABEL, config_object, parameter_count
from perf.arch.report import write_arch_report
from perf.arch.runtimes import RUNTIMES
from perf.arch.study import PRESETS, Preset, run_study

# Published sizes (millions of parameters, pooler included): bert-base-uncased 109.5,
# distilbert-base-uncased 66.4, electra-small-discriminator 13.5, bert_uncased_L-2_H-128_A-2 4.4.
PUBLISHED_MILLIONS = {"bert-base": 109.5, "distilbert-base": 66.4, "electra-small": 13.5, "bert-tiny": 4.4}


@pytest.mark.parametrize("key", sorted(PUBLISHED_MILLIONS))
def test_random_configs_have_the_published_size(key):
    import torch
    from transformers import AutoModel

    with torch.device("meta"):   # shapes only: no memory, no time
        model = AutoModel.from_config(config_object(BY_KEY[key]))
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(PUBLISHED_MILLIONS[key], abs=0.1)


def test_only_minilm_is_labelled_real():
    labels = {arch.key: arch.label for arch in ARCHITECTURES}
    assert labels.pop("minilm-l6-h384") == "real weights"
    assert set(labels.values()) == {RANDOM_LABEL}


def test_quick_preset_gives_the_big_models_fewer_cells():
    quick = PRESETS["quick"]
    tiny, minilm, base = quick.cells(4.4e6), quick.cells(22.7e6), quick.cells(109.5e6)
    assert set(tiny) == set(minilm) == {(n, 1) for n in (16, 64, 128, 256, 512)} | {(16, 8), (128, 8), (16, 32)}
    assert set(base) == {(16, 1), (128, 1), (512, 1), (16, 8)}
    assert set(PRESETS["full"].cells(109.5e6)) == {(n, b) for n in (16, 64, 128, 256, 512) for b in (1, 8, 32)}


def test_parameter_count_reads_the_weights_file(tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_config(config_object(BY_KEY["bert-tiny"]))
    model.save_pretrained(tmp_path)
    assert parameter_count(tmp_path) == sum(p.numel() for p in model.parameters())


@pytest.mark.build
@pytest.mark.live
def test_bert_tiny_study_writes_every_runtime_and_label(tmp_path):
    preset = Preset("test", lengths=(16,), batch_lengths={8: (16,)}, seconds=0.01, warmup=1, min_requests=1,
                    architectures=("bert-tiny",), texts=8)
    out = run_study(preset, tmp_path / "results", tmp_path / "cache")
    report = write_arch_report(out).read_text()

    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    measured = {(r["runtime"], r["threads"], r["batch"]) for r in rows}
    for runtime in RUNTIMES:
        for threads in (("all",) if runtime.served else ("1", "all")):
            assert (runtime.key, threads, "1") in measured and (runtime.key, threads, "8") in measured
    assert all(float(r[f]) > 0 for r in rows for f in ("min_ms", "p50_ms", "p99_ms", "throughput"))
    assert {r["weights"] for r in rows} == {RANDOM_LABEL}

    model = json.loads((out / "summary.json").read_text())["models"][0]
    assert model["int8_gate"].startswith("not applicable") and "passed" not in model["int8_gate"]
    assert model["fp32_gate"] == "passed" and model["fused"]["Attention"] == 2
    assert 0 < model["onnx_int8_mb"] < model["onnx_fp32_mb"]
    for section in ("## Models", "## Latency against sequence length", "## Speedup against batch size",
                    "## All against all", "## Findings"):
        assert section in report
    assert f"BERT-tiny ({RANDOM_LABEL})" in report and "not applicable (random weights)" in report
    assert all(runtime.title in report for runtime in RUNTIMES)
    assert all((out / name).stat().st_size > 10_000 for name in ("latency_vs_length.png", "speedup_vs_batch.png"))


def test_traced_pipeline_answers_as_eager_for_a_model_without_token_types(tmp_path):
    """DistilBERT's forward() takes no token_type_ids: the trace must be fed what it takes."""
    import numpy as np

    from perf.arch.runtimes import TracedPipeline
    from perf.baselines import TorchPipeline
    from tests.tiny_models import tiny_distilbert

    checkpoint = tiny_distilbert(tmp_path / "distilbert")
    texts = ["Book a table for four at seven.", "What's my checking account balance right now?"]
    traced = TracedPipeline(checkpoint)
    np.testing.assert_allclose(traced(texts), TorchPipeline(checkpoint)(texts), atol=1e-5)
    assert len(traced.traces) == 1 and traced(texts) is not None and len(traced.traces) == 1
