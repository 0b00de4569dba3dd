"""perf.peers: the correctness check, the load generator, report parsing, and one short real run.

The real run starts fastembed (in the peers venv, out of this process) and the served
ensemble on the local tritonserver, checks both against sentence-transformers (torch) and
measures them briefly: the path `python -m perf peers` takes, in about a minute.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from perf.errors import PerfError
from perf.peers import check, clients, measure
from perf.peers.environment import parse_runner_output, peers_bin, peers_venv
from perf.peers.report import load_results, table_rows, write_report
from perf.peers.run import merge_rounds
from tests.conftest import ROOT, skip_without_tool

RNG = np.random.default_rng(7)


def unit_rows(count: int = 6) -> np.ndarray:
    rows = RNG.normal(size=(count, 384))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# --- the correctness check -------------------------------------------------------------------

def test_same_direction_passes_whatever_the_scale() -> None:
    reference = unit_rows()
    verdict = check.cosine_check(reference, reference * 3.0 + 1e-7)
    assert verdict["ok"] and verdict["cosine_min"] > 0.9999 and verdict["texts"] == 6


def test_one_wrong_row_fails_the_peer_and_shows_in_the_minimum() -> None:
    """A CLS-pooling peer is wrong on every text; one wrong text is enough to fail."""
    reference = unit_rows()
    candidate = reference.copy()
    candidate[2] = unit_rows(1)[0]  # an unrelated direction: cosine near 0
    verdict = check.cosine_check(reference, candidate)
    assert not verdict["ok"]
    assert verdict["cosine_min"] < 0.5 < verdict["cosine_mean"] < 1.0


def test_shape_and_nan_are_named() -> None:
    reference = unit_rows()
    assert "shape [5, 384]" in check.cosine_check(reference, reference[:5])["error"]
    broken = reference.copy()
    broken[0, 0] = np.nan
    assert check.cosine_check(reference, broken) == {"ok": False, "error": "the embeddings hold NaN or infinity"}


# --- the load generator ----------------------------------------------------------------------

def test_measure_counts_texts_per_second_across_callers() -> None:
    seen: list[list[str]] = []

    def make_call():
        def call(texts):
            time.sleep(0.01)
            seen.append(texts)
        return call

    batches = measure.batches_of([f"text {i}" for i in range(40)], 4)
    result = measure.measure(make_call, batches, concurrency=4, seconds=0.5, warmup_requests=2)
    assert result["requests"] >= 20  # 4 callers x ~50 calls at 10 ms, however loaded the machine
    assert result["throughput"] == pytest.approx(result["requests"] * 4 / 0.5, rel=0.5)
    assert result["p50_ms"] >= 10 and result["p99_ms"] >= result["p50_ms"]
    assert all(len(batch) == 4 for batch in seen)


def test_a_failing_call_fails_its_scenario_and_not_the_others() -> None:
    def make_call():
        def call(texts):
            if len(texts) == 32:
                raise ConnectionResetError("server went away")
        return call

    rows = measure.measure_all(make_call, {16: [f"t{i}" for i in range(37)]}, 0.2, 1, ["b1", "b32"])
    assert [row["status"] for row in rows] == ["ok", "error"]
    assert "server went away" in rows[1]["error"]


# --- the HTTP formats ------------------------------------------------------------------------

def test_triton_binary_output_is_read_back() -> None:
    embeddings = unit_rows(2).astype(np.float32)
    header = json.dumps({"outputs": [{"name": "EMBEDDING", "datatype": "FP32", "shape": [2, 384],
                                      "parameters": {"binary_data_size": embeddings.nbytes}}]}).encode()
    api = clients.triton_http_api("minilm-embed")
    decoded = api.embeddings(header + embeddings.tobytes(), {"inference-header-content-length": str(len(header))})
    np.testing.assert_array_equal(decoded, embeddings)
    request = json.loads(api.body(["a", "b"]))
    assert request["inputs"][0]["shape"] == [2, 1] and request["outputs"][0]["parameters"] == {"binary_data": True}


def test_infinity_rows_are_put_back_in_request_order() -> None:
    payload = json.dumps({"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]})
    decoded = clients.infinity_api("minilm").embeddings(payload.encode(), {})
    np.testing.assert_array_equal(decoded, [[1.0, 0.0], [0.0, 1.0]])


# --- the runner's output and the report ------------------------------------------------------

def test_runner_output_is_its_last_json_line_and_a_failure_quotes_stderr() -> None:
    assert parse_runner_output("fastembed", 0, "noise\n{\"check\": {\"ok\": true}}\n", []) == {"check": {"ok": True}}
    with pytest.raises(PerfError, match=r"fastembed runner failed \(exit 1\).*No module named 'fastembed'"):
        parse_runner_output("fastembed", 1, "", ["Traceback", "ModuleNotFoundError: No module named 'fastembed'"])
    with pytest.raises(PerfError, match="not JSON"):
        parse_runner_output("st-onnx", 0, "half a line", [])


def figures(throughput: float, p50: float) -> list[dict]:
    return [{"seq_len": 16, "scenario": key, "status": "ok", "throughput": throughput * factor,
             "p50_ms": p50, "p99_ms": p50 * 2} for key, factor in (("b1", 0.1), ("c8", 0.5), ("b32", 1.0))]


def a_document() -> dict:
    return {
        "model": "minilm-embed", "started": "2026-12-02T17:00:00+00:00",
        "machine": {"cpu_model": "Test CPU", "cpus_usable": 2, "gpus": []},
        "settings": {"seq_lens": [16], "seconds": 1, "warmup_requests": 1, "cosine_min": 0.99},
        "peers": [
            {"name": "st-torch", "check": {"ok": True, "reference": True}, "rows": figures(100, 20)},
            {"name": "ort", "check": {"ok": True, "cosine_min": 1.0, "cosine_mean": 1.0}, "rows": figures(200, 5)},
            {"name": "triton-http", "check": {"ok": True, "cosine_min": 1.0, "cosine_mean": 1.0},
             "rows": figures(150, 10)},
            {"name": "infinity-ort", "check": {"ok": False, "cosine_min": 0.41, "cosine_mean": 0.7}},
            {"name": "fastembed", "error": "the fastembed runner failed (exit 1): boom"},
        ],
    }


def test_rows_rank_only_correct_peers_with_ratios_to_onnx_runtime(tmp_path: Path) -> None:
    rows = table_rows(a_document())
    by_key = {(row["peer"], row.get("scenario")): row for row in rows}
    assert by_key[("triton-http", "b32")]["vs_ort"] == pytest.approx(0.75)
    assert by_key[("triton-http", "b1")]["vs_ort"] == pytest.approx(0.5)  # ORT's p50 / its p50
    assert by_key[("infinity-ort", None)]["verdict"] == "wrong output"
    assert by_key[("fastembed", None)]["verdict"] == "failed"
    assert "throughput" not in by_key[("infinity-ort", None)]


def test_report_files_read_back(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(a_document()))
    report = write_report(tmp_path).read_text()
    ranked = [line.split("|")[2].strip() for line in report.splitlines() if line.startswith("| 1 ")
              or line.startswith("| 2 ") or line.startswith("| 3 ")]
    assert ranked == ["ort", "triton-http", "st-torch"]
    assert "| infinity-ort |" in report and "wrong output" in report and "failed: the fastembed runner" in report
    assert "Test CPU, 2 cores, no GPU" in report
    with open(tmp_path / "peers.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert {row["peer"] for row in csv_rows} == {"st-torch", "ort", "triton-http", "infinity-ort", "fastembed"}
    assert float(next(r for r in csv_rows if r["peer"] == "ort" and r["scenario"] == "b32")["vs_ort"]) == 1.0


def test_rounds_merge_to_medians_and_the_worst_check() -> None:
    rounds = [{"check": {"ok": True, "cosine_min": 0.9999}, "rows": figures(100, 10)},
              {"check": {"ok": False, "cosine_min": 0.5}, "rows": figures(300, 30)},
              {"check": {"ok": True, "cosine_min": 1.0}, "rows": figures(200, 20)},
              {"error": "infinity_emb exited (1) before answering"}]
    merged = merge_rounds(rounds)
    assert merged["check"]["cosine_min"] == 0.5 and not merged["check"]["ok"]
    b32 = next(row for row in merged["rows"] if row["scenario"] == "b32")
    assert (b32["throughput"], b32["p50_ms"], b32["rounds"]) == (200, 20, 3)
    assert merged["failed_rounds"] == 1 and "error" not in merged
    assert merge_rounds([rounds[3]])["error"].startswith("infinity_emb exited")


def test_report_shows_the_range_over_rounds(tmp_path: Path) -> None:
    document = a_document()
    document["peers"][1]["round_results"] = [{"rows": figures(150, 5)}, {"rows": figures(250, 5)}]
    (tmp_path / "results.json").write_text(json.dumps(document))
    assert "| 200.0 (×1.00) [150–250] |" in write_report(tmp_path).read_text()


def test_a_missing_peers_venv_says_how_to_make_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_ENCODERS_PEERS_VENV", str(tmp_path / "nothing"))
    with pytest.raises(PerfError, match=r"scripts/setup-peers.sh python3.11 .*nothing"):
        peers_bin("python")


def test_missing_or_foreign_results_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(PerfError, match="python -m perf peers --out"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(PerfError, match="not a `python -m perf peers` results file"):
        load_results(tmp_path)


# --- one short real run ----------------------------------------------------------------------

@pytest.mark.live
@pytest.mark.slow
def test_fastembed_and_the_served_ensemble_are_checked_then_measured(embed_repository: Path, tmp_path: Path) -> None:
    """fastembed (peers venv) and the ensemble over HTTP against sentence-transformers (torch):
    both must agree with it (cosine) and get figures at 16 tokens."""
    if not (peers_venv() / "bin" / "python").is_file():
        skip_without_tool(f"no peers venv at {peers_venv()}: scripts/setup-peers.sh (run by scripts/setup.sh) makes it")
    command = [sys.executable, "-m", "perf", "peers", "--model-repository", str(embed_repository),
               "--out", str(tmp_path), "--peers", "fastembed,triton-http", "--seq-len", "16", "--seconds", "0.5"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((tmp_path / "results.json").read_text())
    peers = {peer["name"]: peer for peer in document["peers"]}
    assert set(peers) == {"fastembed", "triton-http"}
    for name, peer in peers.items():
        assert peer["check"]["ok"] and peer["check"]["cosine_min"] > 0.999, (name, peer)
        assert peer["check"]["texts"] == 8
        assert {row["scenario"] for row in peer["rows"] if row["status"] == "ok"} == {"b1", "c8", "b32"}, peer
    assert "## 16 tokens" in (tmp_path / "peers.md").read_text()
