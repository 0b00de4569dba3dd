"""`python -m convert.verify` against the real local server: the check docker-compose.yml's
`verify` service runs once the GPU server is healthy, here on the CPU build (INT8)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, url

# The reference is the PyTorch model: no torch, no verification (the Python 3.12 test environment).
pytest.importorskip("torch", reason="torch is not installed (the Python 3.12 test environment)")


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert.verify", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_served_model_passes_its_precisions_thresholds(intent_server, intent_repository):
    result = verify("--url", url(intent_server, "grpc"), "--repository", str(intent_repository), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["passed"] and report["precision"] == "int8" and report["sentences"] >= 200
    # INT8 runs row by row on the server: batching must not change an answer at all.
    assert report["metrics"]["batch_vs_single_max_abs"] <= 1e-5
    assert report["metrics"]["single_top1_agreement"] >= 0.99
    assert set(report["limits"]) >= {"single_top1_agreement", "batched_top1_agreement", "batch_vs_single_max_abs"}


def test_the_table_names_each_metric_and_its_limit(intent_server):
    result = verify("--url", url(intent_server, "http"))   # no repository: the preset and the server's precision
    assert result.returncode == 0, result.stdout + result.stderr
    assert "single_top1_agreement" in result.stdout and ">= 0.99" in result.stdout
    assert "passed: minilm-intent answers within the int8 thresholds" in result.stdout


def test_past_a_threshold_it_exits_1_and_names_the_metric(intent_server, intent_repository):
    # Held to FP32's limits (1e-4 on probabilities), the INT8 model is far off: it must say so.
    result = verify("--url", url(intent_server, "grpc"), "--precision", "fp32")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: minilm-intent: single_max_abs = " in result.stdout and "(<= 0.0001)" in result.stdout


def test_a_reference_of_another_model_is_refused(intent_server, tmp_path):
    # The embedding checkpoint as the reference of a classifier: not comparable, exit 2, one line.
    from convert.source import minilm_checkpoint

    result = verify("--url", url(intent_server, "grpc"), "--checkpoint", str(minilm_checkpoint()))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is a text-classification model but the reference" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_server_exits_2_with_one_line(tmp_path):
    from serve.ports import free_port

    result = verify("--url", f"grpc://127.0.0.1:{free_port('127.0.0.1')}", "--timeout", "2", "--model", "minilm-intent")
    assert result.returncode == 2 and result.stderr.startswith("error: ")
