"""The client library and its command line: URL handling, input checks, model info read
from the server, top-k, retries, timeouts, the asyncio variant, and `python -m client`.

Server-side tests use the session's real tritonserver (`intent_server`); what is served
is checked against in-process ONNX Runtime in test_serving.py.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc_client

from tests.conftest import PROTOCOLS, url
from client import (AsyncEncoderClient, ClientError, EncoderClient, InputRejected, ModelNotReady, RequestTimeout,
                    ServerUnreachable, parse_endpoint)
from client.payload import encode_texts
from convert.triton_config import read_config
from serve.ports import free_port
from tests.conftest import model_statistics

ROOT = Path(__file__).resolve().parents[1]
MODEL = "minilm-intent"
CAR_RENTAL = ("Hey, I'd like to rent a vehicle from Nov 1st to Nov 15th in Paris and I need a 15 "
              "passenger van")
EXAMPLES = [CAR_RENTAL, "what's the balance on my checking account", "set an alarm for 7am tomorrow"]



# ------------------------------------------------------------------ no server needed

@pytest.mark.parametrize("given, protocol, expected", [
    (None, None, "grpc://127.0.0.1:8001"),
    ("localhost", None, "grpc://localhost:8001"),
    ("localhost", "http", "http://localhost:8000"),
    ("http://10.0.0.5", None, "http://10.0.0.5:8000"),
    ("grpc://triton:9001", "grpc", "grpc://triton:9001"),
    ("127.0.0.1:18000", "http", "http://127.0.0.1:18000"),
    ("[::1]:8001", None, "grpc://[::1]:8001"),
    ("grpc://a:9001,b", None, "grpc://a:9001,b:8001"),
    ("10.0.0.1, 10.0.0.2:9", "http", "http://10.0.0.1:8000,10.0.0.2:9"),
])
def test_endpoint_takes_the_protocol_from_the_scheme_or_the_flag(given, protocol, expected):
    assert parse_endpoint(given, protocol).url == expected


@pytest.mark.parametrize("given, protocol, words", [
    ("http://host:8000", "grpc", "says http"),
    ("ftp://host", None, "unsupported URL scheme"),
    ("host:port", None, "port"),
    ("host:8001/v2", None, "host[:port]"),
    ("host", "udp", "unknown protocol"),
    ("grpc://a:1,http://b:2", None, "one scheme for the whole list"),
    ("a:1,b,a:1", None, "a:1 appears more than once"),
    ("a:1,,b", None, "host\\[:port\\]"),
    ("dns:///svc.ns.svc.cluster.local:8001", None, "write grpc://svc.ns.svc.cluster.local:8001"),
])
def test_endpoint_refuses_what_it_cannot_reach(given, protocol, words):
    with pytest.raises(ClientError, match=words):
        parse_endpoint(given, protocol)


def test_texts_are_checked_before_anything_is_sent():
    assert encode_texts(["héllo", b"raw \xff bytes"]).tolist() == [["héllo".encode()], [b"raw \xff bytes"]]
    for bad, words in (([], "empty"), ("one string", "not a single string"), ([""], r"texts\[0\] is empty"),
                       (["ok", " \n"], r"texts\[1\] is empty"), (["\ud800"], "UTF-8"), ([3], "int")):
        with pytest.raises(InputRejected, match=words):
            encode_texts(bad)


def test_bad_settings_are_refused():
    for settings in (dict(timeout_s=0), dict(retries=-1), dict(max_in_flight=0)):
        with pytest.raises(ClientError):
            AsyncEncoderClient("127.0.0.1:1", **settings)


# ------------------------------------------------------------------ against the real server

def test_model_facts_come_from_the_server(client, intent_server):
    repository = intent_server.model_repository
    config = read_config(repository / MODEL)
    info = client.info
    assert info.name == MODEL and info.task == config.parameters["task"].string_value
    assert info.max_batch_size == config.max_batch_size
    assert info.max_length == int(config.parameters["max_length"].string_value)
    assert info.parameters["precision"] == config.parameters["precision"].string_value
    assert info.num_labels == len((repository / MODEL / "labels.txt").read_text().splitlines())


def test_top_k_comes_sorted_and_matches_the_probabilities(client, intent_server):
    labels = (intent_server.model_repository / MODEL / "labels.txt").read_text().splitlines()
    predictions = client.classify(EXAMPLES, top_k=5)
    probabilities = client.probabilities(EXAMPLES)
    assert [p.label for p in predictions] == ["car_rental", "balance", "alarm"]
    for prediction, row in zip(predictions, probabilities):
        best = np.argsort(-row)[:5]
        assert [label for label, _ in prediction.top_k] == [labels[i] for i in best]
        assert np.allclose([score for _, score in prediction.top_k], row[best], atol=1e-6)  # 6 printed decimals
        assert prediction.label == prediction.top_k[0][0]
        assert prediction.score == pytest.approx(float(row.max()), abs=1e-6)
    with pytest.raises(InputRejected, match="top_k"):
        client.classify(EXAMPLES, top_k=len(labels) + 1)


def test_a_classifier_has_no_embeddings(client):
    with pytest.raises(ClientError, match="text-classification model"):
        client.embed(EXAMPLES)


def test_a_part_of_the_ensemble_is_not_mistaken_for_it(client):
    with pytest.raises(ClientError, match="BYTES TEXT input"):
        EncoderClient(client.endpoint.url, model=f"{MODEL}-encoder")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unreachable_server_is_retried_then_reported(protocol):
    closed = f"{protocol}://127.0.0.1:{free_port('127.0.0.1')}"   # nothing listens there
    with pytest.raises(ServerUnreachable, match="after 3 attempts"):
        EncoderClient(closed, retries=2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_model_is_reported_without_retrying(intent_server, protocol):
    with pytest.raises(ModelNotReady, match="unknown model: 'nope'"):
        EncoderClient(url(intent_server, protocol), model="nope", retries=3)


def test_a_rejected_request_is_sent_once(client, intent_server):
    """Retries are for UNAVAILABLE only: with retries=3, Triton's own failure count grows
    by exactly what one hand-made request costs it."""
    bad = np.array([[b"\xff"]], dtype=object)
    tensor = grpc_client.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(bad)
    before = failure_count(intent_server)
    with grpc_client.InferenceServerClient(intent_server.grpc_url) as raw, pytest.raises(Exception):
        raw.infer(MODEL, [tensor])
    one_request = failure_count(intent_server) - before
    with EncoderClient(client.endpoint.url, retries=3) as retrying:
        with pytest.raises(ClientError, match="not valid UTF-8"):
            retrying.classify([bad[0, 0]])
    assert one_request > 0
    assert failure_count(intent_server) - before == 2 * one_request


def failure_count(server) -> int:
    return model_statistics(server, MODEL)["fail"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_slow_answer_raises_request_timeout_and_the_server_keeps_serving(intent_server, protocol):
    # 64 texts of 128 tokens take far longer than 20 ms on a CPU; if even opening the
    # client (metadata calls) overruns, that is the same RequestTimeout.
    long_texts = ["tell me everything about the weather in Paris " * 40] * 64
    with pytest.raises(RequestTimeout, match="timeout"):
        with EncoderClient(url(intent_server, protocol), timeout_s=0.02) as hasty:
            hasty.classify(long_texts)
    with EncoderClient(url(intent_server, protocol)) as patient:
        assert patient.classify([CAR_RENTAL])[0].label == "car_rental"


def test_the_async_client_gives_the_sync_answers(intent_server):
    texts = EXAMPLES * 30   # 90 texts: three chunks each call

    async def classify_concurrently() -> list:
        async with AsyncEncoderClient(url(intent_server, "grpc")) as over_grpc, \
                AsyncEncoderClient(url(intent_server, "http")) as over_http:
            return await asyncio.gather(over_grpc.classify(texts, top_k=2), over_http.classify(texts, top_k=2),
                                        over_grpc.probabilities(texts))

    by_grpc, by_http, probabilities = asyncio.run(classify_concurrently())
    with EncoderClient(url(intent_server, "grpc")) as sync_client:
        expected = sync_client.classify(EXAMPLES, top_k=2) * 30
        num_labels = sync_client.info.num_labels
    assert by_grpc == expected and by_http == expected
    assert probabilities.shape == (90, num_labels)


def test_an_async_client_must_be_opened_before_its_info_is_read():
    with pytest.raises(ClientError, match="not open"):
        _ = AsyncEncoderClient("127.0.0.1:1").info


# ------------------------------------------------------------------ python -m client

def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_cli_prints_a_table_with_labels_and_runners_up(intent_server):
    result = run_cli(*EXAMPLES, "--url", url(intent_server, "grpc"), "--top-k", "3")
    assert result.returncode == 0, result.stderr
    for words in ("car_rental", "balance", "alarm", "runners-up", f"3 text(s) over grpc://{intent_server.grpc_url}"):
        assert words in result.stdout


def test_cli_reads_stdin_and_writes_json_lines(intent_server):
    result = run_cli("--url", intent_server.http_url, "--protocol", "http", "--json", "--top-k", "2",
                     stdin=f"{CAR_RENTAL}\n\n   \nset an alarm for 7am tomorrow\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["label"] for line in lines] == ["car_rental", "alarm"]      # blank lines skipped
    assert all(len(line["top_k"]) == 2 and line["top_k"][0]["label"] == line["label"] for line in lines)


def test_cli_reads_a_file(intent_server, tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(EXAMPLES) + "\n")
    result = run_cli("--file", str(questions), "--url", url(intent_server, "http"), "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["car_rental", "balance", "alarm"]


@pytest.mark.parametrize("args, status, words", [
    (["hello", "--model", "nope"], 1, "unknown model: 'nope'"),
    ([""], 1, "texts[0] is empty"),
    (["hello", "--embed"], 2, "text-classification model"),
])
def test_cli_fails_with_one_line_and_a_status(intent_server, args, status, words):
    result = run_cli(*args, "--url", url(intent_server, "grpc"))
    assert result.returncode == status
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_cli_without_texts_says_how_to_give_some():
    result = run_cli("--url", "127.0.0.1:1", stdin="")
    assert result.returncode == 2 and "holds no text" in result.stderr


def test_cli_reports_an_unreachable_server(intent_server):
    result = run_cli("hello", "--url", f"grpc://127.0.0.1:{free_port('127.0.0.1')}", "--retries", "0")
    assert result.returncode == 1 and "cannot reach Triton" in result.stderr
