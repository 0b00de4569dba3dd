"""perf load: the ensemble under sustained load, and the pieces it is built from.

The load test drives the real perf_analyzer against the session's real tritonserver for
about 100 s: 60 s of 16-token texts at concurrency 16 (the spec's minimum), then mixed
lengths and two batch sizes for 10 s each. It checks the report against Triton's own
statistics, read independently before and after. The 10-minute soak is
`python -m perf load --soak`, on demand only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perf import inputs, memory
from tests.conftest import fresh_token_count, model_statistics, wait_for

ENSEMBLE = "minilm-intent"


# --- memory sampling --------------------------------------------------------------------------

# A child that allocates (and touches) the MiB it is told on stdin, then answers "ok".
GROWER = """
import sys
held = []
print("ready", flush=True)
for line in sys.stdin:
    held.append(b"x" * (int(line) * 1024 * 1024))
    print("ok", flush=True)
"""
# Its parent: the sampler must find the child through the process tree, as it finds the stubs.
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])"


def test_sampler_sees_a_child_process_grow_and_names_it(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, GROWER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        with memory.MemorySampler(parent.pid, interval_s=0.05) as sampler:
            # Enough samples on each side for a verdict (a warm-up and a final window of 3),
            # however slowly a busy machine lets the sampler run.
            assert wait_for(lambda: len(sampler.samples()) >= 16, timeout_s=60)
            flat_until = sampler.now_s()
            parent.stdin.write("80\n")
            parent.stdin.flush()
            assert parent.stdout.readline().strip() == "ok"
            grown_at = sampler.now_s()
            assert wait_for(lambda: sum(s.at_s > grown_at for s in sampler.samples()) >= 16, timeout_s=60)
        samples = sampler.samples()
    finally:
        parent.kill()
        parent.wait()

    assert all(len(sample.rss) == 2 for sample in samples), "the parent and its child, every time"
    child_label = next(label for label in samples[-1].rss if "#" in label)  # same name: told apart by pid
    flat = memory.analyze(samples, end_s=flat_until, min_warmup_s=0.2)
    assert abs(flat[memory.TOTAL].growth) < 0.10 and memory.exceeded(flat, 0.10) == []

    grown = memory.analyze(samples, min_warmup_s=0.2)
    assert grown[child_label].final_mib - grown[child_label].warmup_mib == pytest.approx(80, abs=8)
    assert grown[child_label].growth > 1.0 and grown[child_label].peak_mib >= grown[child_label].final_mib
    parent_label = next(label for label in grown if label not in (child_label, memory.TOTAL))
    assert abs(grown[parent_label].growth) < 0.10
    blamed = {problem.split(" ")[0] for problem in memory.exceeded(grown, 0.10)}
    assert blamed == {child_label, memory.TOTAL}

    header, rows = memory.samples_table(samples)
    assert header[0] == "at_s" and header[-1] == memory.TOTAL and len(rows) == len(samples)


def test_analyze_refuses_a_stretch_too_short_to_judge() -> None:
    samples = [memory.Sample(at_s=float(i), rss={"p": 100}, pids={"p": 1}) for i in range(8)]
    with pytest.raises(ValueError, match="run longer"):
        memory.analyze(samples)  # 5 s warm-up leaves 3 samples of the 6 a verdict needs


# --- the load itself --------------------------------------------------------------------------

@pytest.mark.slow
def test_load_on_the_ensemble_has_no_failures_and_no_memory_growth(intent_server, intent_repository: Path,
                                                                    tmp_path: Path) -> None:
    from perf.load import LoadOptions, load

    before = model_statistics(intent_server, ENSEMBLE)
    document = load(LoadOptions(
        model_repository=intent_repository, out_dir=tmp_path / "load", duration_s=60, phase_duration_s=10,
        batch_sizes=(8, 32), grpc_url=intent_server.grpc_url, memory_interval_s=0.5,
    ))
    after = model_statistics(intent_server, ENSEMBLE)

    phases = {phase["name"]: phase for phase in document["phases"]}
    assert list(phases) == ["fixed", "mixed", "batch-8", "batch-32"]
    assert document["server"]["pid"] == intent_server.pid, "the server was found by its port"
    assert document["passed"], document["problems"]

    # No failed request, on perf_analyzer's side or on Triton's (every model of the ensemble).
    for phase in phases.values():
        assert phase["status"] == "ok" and phase["perf_analyzer_exit"] == 0, phase.get("error")
        assert phase["failures"] == phase["client_errors"] == phase["unanswered"] == 0
        assert all(delta["fail"] == 0 for delta in phase["server"].values())
        assert phase["requests"] > 0 and 0 < phase["p50_ms"] <= phase["p99_ms"]
        # perf_analyzer counts the requests that ended inside its windows; Triton also saw
        # those still in flight when the last window closed (16) and the few sent while
        # perf_analyzer was stopping (up to 11 more in the runs seen).
        after_windows = phase["server_success"] - phase["requests"]
        assert 0 <= after_windows <= 2 * 16 + 0.01 * phase["requests"], phase
    assert after["fail"] == before["fail"]
    warmup = document["warmup"]  # the largest input, twice, before the phases
    assert (warmup["texts_per_request"], warmup["tokens"]) == (32, 128)
    assert after["success"] - before["success"] == warmup["requests"] + sum(
        phase["server_success"] for phase in phases.values())

    # At least 60 s of load at concurrency 16, by perf_analyzer's own window boundaries.
    assert phases["fixed"]["concurrency"] == 16 and phases["fixed"]["measured_s"] >= 60

    # Memory of tritonserver and its stubs, per phase and over the run, within 10% after warm-up.
    for report in [phase["memory"] for phase in phases.values()] + [document["memory_whole_run"]]:
        expected = {"tritonserver", "stub:minilm-intent-tokenizer", "stub:minilm-intent-encoder", memory.TOTAL}
        assert expected <= set(report)
        assert all(growth["growth"] <= 0.10 and not growth["restarted"] for growth in report.values()), report

    # The mixed phase sent texts of every length from one word to the model's maximum.
    assert document["max_length"] == 128
    texts = [step["TEXT"][0] for step in json.loads(Path(phases["mixed"]["input_data"]).read_text())["data"]]
    tokenizer_json = intent_repository / "minilm-intent-tokenizer" / "1" / "tokenizer.json"
    assert {fresh_token_count(tokenizer_json, text) for text in texts} == set(range(3, 129))
    assert phases["mixed"]["server_success"] >= len(texts), "one async thread takes the steps in turn: all sent"

    # The batch phases sent real batches, up to max_batch_size read from the model's config.
    assert document["max_batch_size"] == 32
    for size in (8, 32):
        assert phases[f"batch-{size}"]["texts_per_request"] == size  # Triton's inferences / requests
        assert phases[f"batch-{size}"]["texts_per_execution"]["minilm-intent-encoder"] >= size
    assert phases["fixed"]["texts_per_request"] == 1

    out = tmp_path / "load"
    assert json.loads((out / "load.json").read_text())["phases"] == document["phases"]
    summary = (out / "summary.md").read_text()
    assert "**Passed.**" in summary and all(f"| {name} |" in summary for name in phases)
    assert (out / "memory.csv").read_text().startswith("at_s,")


def test_cli_rejects_a_malformed_batch_size_list() -> None:
    from perf.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["load", "--batch-sizes", "8,x"])
    assert exit_info.value.code == 2


def test_a_phase_counts_the_requests_triton_rejects(intent_server, intent_repository: Path, tmp_path: Path) -> None:
    """The failure count is real: every 8th text is whitespace only, which the tokenizer refuses."""
    from perf.load.phases import Phase, run_phase
    from perf.load.report import judge_phase
    from perf.models import resolve_model
    from perf.triton import TritonClient, TritonServer

    model = resolve_model(intent_repository, ENSEMBLE)
    texts = inputs.exact_length_texts(inputs.load_tokenizer(model.tokenizer_json), 16, 127)
    texts = ["   " if index % 8 == 0 else text for index, text in enumerate(texts)]
    bad_input = tmp_path / "bad.json"
    bad_input.write_text(json.dumps(inputs.ensemble_input_data(texts)))
    server = TritonServer(intent_server.grpc_url, None, pid=None, started_here=False)
    with TritonClient(server) as client:
        ensemble_config = client.model_config(ENSEMBLE)
    before = model_statistics(intent_server, ENSEMBLE)

    result = run_phase(Phase("rejected", "16", bad_input, 1, 3.0), 16, server, ensemble_config, None, tmp_path)
    judge_phase(result, None, 0.10)

    failed = model_statistics(intent_server, ENSEMBLE)["fail"] - before["fail"]
    assert failed > 0 and result.failures >= failed == result.server[ENSEMBLE]["fail"]
    assert result.failed_models[ENSEMBLE] == failed
    assert any("failed requests" in problem for problem in result.problems)
