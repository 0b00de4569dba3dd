"""How each served or in-process peer is called: texts in, embeddings [n, 384] out.

Every HTTP server (infinity-emb, Triton's HTTP endpoint) is driven by the same client: one
keep-alive `http.client` connection per caller, a JSON request built per call, the body read
whole. Only the request and response formats differ (`HttpApi`). During the load only the
status is checked; the body is parsed for the correctness check, not in the timed loop.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._modelrepo import EMBEDDING, TEXT_INPUT

Call = Callable[[list[str]], Any]


@dataclass(frozen=True)
class HttpApi:
    path: str
    body: Callable[[list[str]], bytes]
    embeddings: Callable[[bytes, dict[str, str]], np.ndarray]


def infinity_api(served_name: str) -> HttpApi:
    """infinity-emb's OpenAI-style /embeddings: JSON in, JSON floats out."""
    def body(texts: list[str]) -> bytes:
        return json.dumps({"model": served_name, "input": texts}).encode()

    def embeddings(payload: bytes, _headers: dict[str, str]) -> np.ndarray:
        rows = sorted(json.loads(payload)["data"], key=lambda row: row["index"])
        return np.asarray([row["embedding"] for row in rows], dtype=np.float32)

    return HttpApi("/embeddings", body, embeddings)


def triton_http_api(model: str) -> HttpApi:
    """Triton's KServe v2 /infer: texts as JSON, the embedding back as a binary tensor
    (what tritonclient.http asks for by default; 32 x 384 floats as JSON text cost more)."""
    def body(texts: list[str]) -> bytes:
        return json.dumps({
            "inputs": [{"name": TEXT_INPUT, "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}],
            "outputs": [{"name": EMBEDDING, "parameters": {"binary_data": True}}],
        }).encode()

    def embeddings(payload: bytes, headers: dict[str, str]) -> np.ndarray:
        header_length = int(headers.get("inference-header-content-length", len(payload)))
        header = json.loads(payload[:header_length])
        output = next(item for item in header["outputs"] if item["name"] == EMBEDDING)
        if "data" in output:  # the server answered in JSON after all
            return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        return np.frombuffer(payload[header_length:], dtype=np.float32).reshape(output["shape"])

    return HttpApi(f"/v2/models/{model}/infer", body, embeddings)


def http_caller(url: str, api: HttpApi, parse: bool = False) -> Callable[[], Call]:
    """A factory of callers, each on its own keep-alive connection to `url` (host:port)."""
    host, _, port = url.rpartition(":")
    headers = {"Content-Type": "application/json"}

    def make_call() -> Call:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)

        def call(texts: list[str]) -> Any:
            connection.request("POST", api.path, body=api.body(texts), headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}{api.path} answered {response.status}: {payload[:300]!r}")
            if parse:
                return api.embeddings(payload, {key.lower(): value for key, value in response.getheaders()})
            return payload

        return call

    return make_call


def triton_grpc_caller(url: str, model: str) -> Callable[[], Call]:
    """A factory of tritonclient gRPC callers, one client (channel) each."""
    import tritonclient.grpc as grpcclient

    def make_call() -> Call:
        client = grpcclient.InferenceServerClient(url)
        requested = [grpcclient.InferRequestedOutput(EMBEDDING)]

        def call(texts: list[str]) -> np.ndarray:
            batch = np.array([[text.encode()] for text in texts], dtype=np.object_)
            request = grpcclient.InferInput(TEXT_INPUT, list(batch.shape), "BYTES")
            request.set_data_from_numpy(batch)
            return client.infer(model, [request], outputs=requested).as_numpy(EMBEDDING)

        return call

    return make_call


def ort_caller(pipeline: Callable[[list[str]], dict[str, np.ndarray]]) -> Callable[[], Call]:
    """Plain ONNX Runtime in this process (perf.baselines.OrtPipeline): one session shared by all callers."""
    def call(texts: list[str]) -> np.ndarray:
        outputs = pipeline(texts)
        return outputs.get("embedding", next(iter(outputs.values())))

    return lambda: call
