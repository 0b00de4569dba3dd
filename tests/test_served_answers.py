"""What the real tritonserver serves, checked against the same model run in-process.

One server for the session (the `intent_server` fixture). The in-process side runs
the very functions the Python-backend models run (tokenizer_model.decode_texts/encode,
onnx_encoder_model.run_batch) on the repository's own model.onnx and tokenizer.json,
so any difference comes from serving: batching, padding, transport, per-request state.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc_client
import tritonclient.http as http_client
from tritonclient.utils import InferenceServerException

from client import AsyncEncoderClient, ClientError, EncoderClient
from convert.python_models.onnx_encoder_model import make_session, run_batch
from convert.python_models.tokenizer_model import decode_texts, encode, load_tokenizer
from convert.sentences import validation_sentences
from modelrepo import read_config
from tests.conftest import PROTOCOLS, model_statistics, url

ENSEMBLE = "minilm-intent"
FUSED = "minilm-intent-fused"       # tokenizer + encoder in one Python model, served beside the ensemble
TOLERANCE = 1e-5
GOOD_TEXT = "set an alarm for 7am tomorrow"
SENTENCES = [text for text in validation_sentences() if text]   # 211 texts, 1 to 200+ words
# Every 15th: one word up to past the 128-token limit; plus non-ASCII text.
SAMPLE = SENTENCES[::15] + ["¿Dónde está mi pedido? Lo pedí hace 3 días 🚚"]


# ------------------------------------------------------------------ in-process twin

@dataclass
class InProcessModel:
    """The served variant of one model, run here exactly as its Python-backend model runs it."""
    tokenizer: object
    session: object
    output: str                 # graph output compared: probabilities or embedding
    row_by_row: bool
    max_length: int
    labels: list[str]

    def run(self, texts: list[str | bytes]) -> np.ndarray:
        """One row per text, each run on its own (the served answer for that text alone)."""
        with_types = "token_type_ids" in {i.name for i in self.session.get_inputs()}
        rows = []
        for text in texts:
            raw = np.array([text.encode() if isinstance(text, str) else text], dtype=object)
            feeds = encode(self.tokenizer, decode_texts(raw, self.max_length), with_types)
            rows.append(run_batch(self.session, feeds, [self.output], self.row_by_row)[0])
        return np.concatenate(rows)

    def label(self, text: str) -> str:
        return self.labels[int(self.run([text]).argmax())]


def load_in_process(repository: Path, name: str, output: str) -> InProcessModel:
    ensemble, encoder = read_config(repository / name), read_config(repository / f"{name}-encoder")
    max_length = int(ensemble.parameters["max_length"].string_value)
    labels_file = repository / name / "labels.txt"
    return InProcessModel(
        tokenizer=load_tokenizer(repository / f"{name}-tokenizer/1/tokenizer.json", max_length),
        session=make_session(repository / f"{name}-encoder/1/model.onnx", os.cpu_count() or 1),
        output=output,
        row_by_row=encoder.parameters["row_by_row"].string_value == "1",
        max_length=max_length,
        labels=labels_file.read_text().splitlines() if labels_file.exists() else [],
    )


@pytest.fixture(scope="module")
def in_process(intent_repository) -> InProcessModel:
    return load_in_process(intent_repository, ENSEMBLE, "probabilities")



def served_models(server) -> list[str]:
    return [ENSEMBLE] + ([FUSED] if FUSED in server.ready_models() else [])


def assert_close(served: np.ndarray, expected: np.ndarray) -> None:
    assert served.shape == expected.shape
    assert (served.argmax(axis=1) == expected.argmax(axis=1)).all(), "top-1 differs"
    difference = float(np.abs(served - expected).max())
    assert difference <= TOLERANCE, f"max abs difference {difference:.3g} > {TOLERANCE}"


# ------------------------------------------------------------------ served == in-process

@pytest.mark.slow
@pytest.mark.parametrize("model", [ENSEMBLE, FUSED])
def test_one_by_one_equals_in_process(client, intent_server, in_process, model):
    if model not in served_models(intent_server):
        pytest.skip(f"{model} is not in this repository")
    with EncoderClient(client.endpoint.url, model=model) as model_client:
        served = np.concatenate([model_client.probabilities([text]) for text in SAMPLE])
        labels = [model_client.classify([text])[0].label for text in SAMPLE]
    expected = in_process.run(SAMPLE)
    assert_close(served, expected)
    assert labels == [in_process.labels[i] for i in expected.argmax(axis=1)]


@pytest.mark.slow
@pytest.mark.parametrize("model", [ENSEMBLE, FUSED])
def test_mixed_length_batch_equals_in_process_and_its_sentences_one_by_one(client, intent_server, in_process, model):
    if model not in served_models(intent_server):
        pytest.skip(f"{model} is not in this repository")
    batch = [SAMPLE[i] for i in np.random.default_rng(7).permutation(len(SAMPLE))]  # short beside long
    with EncoderClient(client.endpoint.url, model=model) as model_client:
        served_batch = model_client.probabilities(batch)
        served_singles = np.concatenate([model_client.probabilities([text]) for text in batch])
    assert_close(served_batch, in_process.run(batch))
    assert_close(served_batch, served_singles)


def pytorch_reference_logits(texts: list[str], max_length: int) -> np.ndarray:
    """The PyTorch model the build validates against, on the same token ids. Batched by
    similar length: 20 times faster than one by one on 2 cores, and padding under the
    attention mask moves fp32 logits by under 1e-5, far below any top-1 margin."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the Python 3.12 test environment)")

    from convert.reference import build_reference
    from convert.source import resolve_model_spec

    spec = resolve_model_spec(ENSEMBLE)
    reference = build_reference(spec)
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", max_length)
    with_types = "token_type_ids" in reference.input_names
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits = np.zeros((len(texts), len(reference.labels)), np.float32)
    with torch.no_grad():
        for start in range(0, len(order), 16):
            rows = order[start:start + 16]
            feeds = encode(tokenizer, [texts[i] for i in rows], with_types)
            logits[rows] = reference.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()
    return logits


@pytest.mark.slow
def test_served_int8_agrees_with_the_pytorch_reference_on_200_sentences(intent_server):
    with EncoderClient(url(intent_server, "grpc")) as served_client:
        precision = served_client.info.parameters.get("precision")
        served = served_client.probabilities(SENTENCES).argmax(axis=1)
        expected = pytorch_reference_logits(SENTENCES, served_client.info.max_length).argmax(axis=1)
    agreement = float((served == expected).mean())
    print(f"\nserved {precision} vs PyTorch reference: top-1 agreement {agreement:.4f} "
          f"on {len(SENTENCES)} sentences ({int((served != expected).sum())} differ)")
    assert len(SENTENCES) >= 200
    assert agreement >= 0.99


# ------------------------------------------------------------------ bad input, raw tritonclient

def raw_infer(server, protocol: str, data: np.ndarray, *, datatype: str = "BYTES", shape=None,
              model: str = ENSEMBLE):
    """One request built by hand with tritonclient, bypassing every check of our client."""
    module = grpc_client if protocol == "grpc" else http_client
    address = server.grpc_url if protocol == "grpc" else server.http_url
    tensor = module.InferInput("TEXT", list(shape or data.shape), datatype)
    tensor.set_data_from_numpy(data)
    with module.InferenceServerClient(address) as raw:
        return raw.infer(model, [tensor], outputs=[module.InferRequestedOutput("LABEL")])


def texts_array(*texts: str | bytes) -> np.ndarray:
    return np.array([t.encode() if isinstance(t, str) else t for t in texts], dtype=object).reshape(-1, 1)


BAD_REQUESTS = {
    # case: (request arguments, words Triton's message must hold)
    "empty string": (dict(data=texts_array("")), "empty or whitespace"),
    "whitespace only": (dict(data=texts_array(" \t\n ")), "empty or whitespace"),
    "invalid UTF-8": (dict(data=texts_array(b"caf\xc3 \xff\xfe")), "not valid UTF-8"),
    "one bad text in a batch": (dict(data=texts_array("fine text", "")), "TEXT[1] is empty"),
    "empty batch": (dict(data=np.zeros((0, 1), dtype=object)), "got 0"),
    "batch over max_batch_size": (dict(data=texts_array(*["hello"] * 33)), "batch-size must be <= 32"),
    "wrong dtype": (dict(data=np.zeros((1, 1), np.float32), datatype="FP32"), "expects 'BYTES'"),
    "wrong shape": (dict(data=texts_array("a", "b").reshape(1, 2)), "unexpected shape"),
    "unknown model": (dict(data=texts_array("hello"), model="no-such-model"), "unknown model"),
}


def assert_still_serving(server, protocol: str, in_process: InProcessModel) -> None:
    """The good request each bad-input test sends after the bad one, and its answer."""
    result = raw_infer(server, protocol, texts_array(GOOD_TEXT))
    assert result.as_numpy("LABEL")[0, 0].decode() == in_process.label(GOOD_TEXT)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_gets_a_clear_error_and_the_server_keeps_serving(intent_server, in_process, protocol, case):
    arguments, words = BAD_REQUESTS[case]
    if case == "batch over max_batch_size":
        assert read_config(intent_server.model_repository / ENSEMBLE).max_batch_size == 32
    with pytest.raises(InferenceServerException) as raised:
        raw_infer(intent_server, protocol, **arguments)
    assert words in raised.value.message(), raised.value.message()
    assert_still_serving(intent_server, protocol, in_process)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rejected_text_comes_back_as_a_client_error_status(intent_server, protocol):
    with pytest.raises(InferenceServerException) as raised:
        raw_infer(intent_server, protocol, texts_array(""))
    assert raised.value.status() in ("StatusCode.INVALID_ARGUMENT", "400")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_megabyte_of_text_is_truncated_not_rejected(intent_server, in_process, protocol):
    passage = max(SENTENCES, key=len)
    megabyte = (passage + " ") * (1_000_000 // (len(passage) + 1) + 1)
    assert len(megabyte.encode()) >= 1_000_000
    # The first 2,000 characters already hold more than max_length tokens: same ids once truncated.
    assert len(in_process.tokenizer.encode(megabyte[:2000]).ids) == in_process.max_length
    with EncoderClient(url(intent_server, protocol)) as big_client:
        served = big_client.probabilities([megabyte])
        head = big_client.classify([megabyte[:2000]])[0].label
    assert_close(served, in_process.run([megabyte]))
    assert in_process.labels[int(served.argmax())] == head
    assert_still_serving(intent_server, protocol, in_process)


# ------------------------------------------------------------------ no state between requests

@pytest.mark.slow
@pytest.mark.parametrize("model", [ENSEMBLE, FUSED])
def test_concurrent_requests_of_mixed_sizes_get_their_own_answers(intent_server, in_process, model):
    """Dynamic batching puts concurrent requests of different lengths and batch sizes into
    one execute() of the Python models (padded together, split again). Each answer must
    be the one its request gets alone, over both protocols at once, with failing requests
    mixed in."""
    if model not in served_models(intent_server):
        pytest.skip(f"{model} is not in this repository")
    rng = np.random.default_rng(11)
    requests = [[SAMPLE[i]] for i in range(len(SAMPLE))]
    requests += [[SAMPLE[j] for j in rng.choice(len(SAMPLE), size)] for size in (2, 3, 7, 16, 32)]
    requests += [[SENTENCES[-1]] * 4, [SENTENCES[0]]]                     # longest and shortest
    expected = {tuple(texts): in_process.run(texts) for texts in requests}

    async def send_all() -> list:
        clients = [AsyncEncoderClient(url(intent_server, p), model=model, max_in_flight=64) for p in PROTOCOLS]
        try:
            calls = [clients[i % 2].probabilities(texts) for i, texts in enumerate(requests * 2)]
            calls += [clients[i % 2].probabilities([b""]) for i in range(4)]   # rejected, mixed in
            order = rng.permutation(len(calls))
            answers = await asyncio.gather(*(calls[i] for i in order), return_exceptions=True)
            return [answers[list(order).index(i)] for i in range(len(calls))]
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    batched_model = FUSED if model == FUSED else f"{ENSEMBLE}-encoder"
    before = execution_counts(intent_server, batched_model)
    answers = asyncio.run(send_all())
    executions, requests_run = np.subtract(execution_counts(intent_server, batched_model), before)
    assert executions < requests_run, "no two requests shared an execution: the test proved nothing"
    for texts, answer in zip(requests * 2, answers):
        assert not isinstance(answer, BaseException), answer
        assert_close(answer, expected[tuple(texts)])
    assert all(isinstance(answer, ClientError) for answer in answers[len(requests) * 2:])


def execution_counts(server, model: str) -> tuple[int, int]:
    """(executions, successful requests) of one model, from Triton's statistics."""
    counts = model_statistics(server, model)
    return counts["executions"], counts["success"]


# ------------------------------------------------------------------ the embedding model

@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_embeddings_equal_in_process_one_by_one_and_batched(embed_server, embed_repository, protocol):
    in_process_embed = load_in_process(embed_repository, "minilm-embed", "embedding")
    texts = SAMPLE[:8]
    with EncoderClient(url(embed_server, protocol), model="minilm-embed") as embed_client:
        assert not embed_client.info.is_classifier and embed_client.info.embedding_dim == 384
        batched = embed_client.embed(texts)
        singles = np.concatenate([embed_client.embed([text]) for text in texts])
        with pytest.raises(ClientError, match="embedding model"):
            embed_client.classify(texts)
    expected = in_process_embed.run(texts)
    assert batched.shape == (len(texts), 384)
    assert float(np.abs(batched - expected).max()) <= TOLERANCE
    assert float(np.abs(singles - expected).max()) <= TOLERANCE
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-4)
