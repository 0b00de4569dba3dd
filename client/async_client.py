"""AsyncEncoderClient: classify or embed texts with a Triton encoder ensemble, with asyncio.

    async with AsyncEncoderClient("grpc://127.0.0.1:8001") as client:
        predictions = await client.classify(["book a table for two"], top_k=3)

On open it reads the model's metadata and config from the server (tensors, max batch
size, task, max length). A call splits its texts into chunks of max_batch_size, sends
up to `max_in_flight` of them at once, retries a chunk only for failures that pass by
themselves (server unreachable, model being reloaded or restored: see client/errors.py),
and returns the answers in the order of the texts. With several servers (a list in the
URL, or a DNS name with many records) the chunks are spread over them, and a chunk that
meets a replica going away is sent to another (client/replicas.py, client/transport.py).
"""
from __future__ import annotations

import asyncio
from typing import Callable, Sequence, TypeVar

import numpy as np

from . import payload
from .endpoint import Endpoint, parse_endpoint
from .errors import ClientError, ModelUnavailable
from .model_info import ModelInfo, from_server
from .payload import Prediction, Text
from .replicas import Replicas
from .retry import AttemptCounts, RetryPolicy, with_retries
from .transport import open_replicas

DEFAULT_MODEL = "minilm-intent"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
DEFAULT_MAX_IN_FLIGHT = 4

T = TypeVar("T")


class AsyncEncoderClient:
    def __init__(self, url: str | None = None, *, protocol: str | None = None, model: str = DEFAULT_MODEL,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        _check_settings(timeout_s, retries, max_in_flight)
        self.endpoint: Endpoint = parse_endpoint(url, protocol)
        self.model = model
        self.timeout_s = timeout_s
        self.retry_policy = RetryPolicy(retries=retries)
        self.max_in_flight = max_in_flight
        self.attempt_counts = AttemptCounts()   # failed attempts that were made again, by error type
        self._replicas: Replicas | None = None
        self._info: ModelInfo | None = None

    # ----- lifecycle -------------------------------------------------------------------

    async def open(self) -> "AsyncEncoderClient":
        """Connect and read the model's info; raises ServerUnreachable or ModelNotReady."""
        if self._info is None:
            if self._replicas is None:
                self._replicas = open_replicas(self.endpoint, self.timeout_s, self.max_in_flight,
                                               self.attempt_counts)
            self._info = await self._read_model_info()
        return self

    async def close(self) -> None:
        replicas, self._replicas, self._info = self._replicas, None, None
        if replicas is not None:
            await replicas.close()

    async def __aenter__(self) -> "AsyncEncoderClient":
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise ClientError("the client is not open: use `async with` or `await client.open()` first")
        return self._info

    # ----- the calls -------------------------------------------------------------------

    async def classify(self, texts: Sequence[Text], top_k: int = 1) -> list[Prediction]:
        """Top-1 label and score per text, with the `top_k` best (label, score) pairs."""
        batch = payload.encode_texts(texts)  # bad input fails here, before any request
        info = await self._require_task(classifier=True)
        payload.check_top_k(top_k, info)
        outputs = payload.classification_outputs(self._replicas.protocol, top_k)
        chunks = await self._infer_chunks("classify", batch, outputs, payload.parse_predictions)
        return [prediction for chunk in chunks for prediction in chunk]

    async def probabilities(self, texts: Sequence[Text]) -> np.ndarray:
        """The full [n, num_labels] probability matrix, in the model's label order."""
        batch = payload.encode_texts(texts)
        await self._require_task(classifier=True)
        outputs = payload.probability_outputs(self._replicas.protocol)
        return np.concatenate(await self._infer_chunks("score", batch, outputs, payload.parse_probabilities))

    async def embed(self, texts: Sequence[Text]) -> np.ndarray:
        """[n, dim] float32 embeddings (L2-normalised if the model was built so)."""
        batch = payload.encode_texts(texts)
        await self._require_task(classifier=False)
        outputs = payload.embedding_outputs(self._replicas.protocol)
        return np.concatenate(await self._infer_chunks("embed", batch, outputs, payload.parse_embeddings))

    # ----- internals -------------------------------------------------------------------

    async def _read_model_info(self) -> ModelInfo:
        where = f"{self.model} at {self.endpoint}"
        # Metadata first: for an unknown model its error carries Triton's own words.
        metadata = await self._call(lambda server: server.model_metadata(self.model), f"read the metadata of {where}")
        config = await self._call(lambda server: server.model_config(self.model), f"read the config of {where}")

        async def require_ready(server) -> None:  # raised inside the call, so a model being reloaded is retried
            if not await server.is_model_ready(self.model):
                raise ModelUnavailable(f"{where} is known to the server but not ready (still loading, or "
                                       "failed: see the server's log)")

        await self._call(require_ready, f"ask whether {where} is ready")
        return from_server(metadata, config)

    async def _require_task(self, classifier: bool) -> ModelInfo:
        info = (await self.open()).info
        if info.is_classifier != classifier:
            wanted = "classify()/probabilities()" if info.is_classifier else "embed()"
            raise ClientError(f"{info.name} is a {info.task} model: use {wanted}")
        return info

    async def _infer_chunks(self, verb: str, batch: np.ndarray, outputs: list,
                            parse: Callable[[object], T]) -> list[T]:
        """One request per chunk of max_batch_size texts, up to max_in_flight at once, in order."""
        size = self.info.max_batch_size
        in_flight = asyncio.Semaphore(self.max_in_flight)

        async def send(start: int, chunk: np.ndarray) -> T:
            doing = f"{verb} texts {start}..{start + len(chunk) - 1} with {self.info.name} at {self.endpoint}"
            inputs = [payload.text_input(self._replicas.protocol, chunk)]
            async with in_flight:
                result = await self._call(lambda server: server.infer(self.info.name, inputs, outputs), doing)
            return parse(result)

        chunks = payload.split_batches(batch, size)
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other chunks
                tasks = [group.create_task(send(i * size, chunk)) for i, chunk in enumerate(chunks)]
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _call(self, call: Callable, doing: str):
        """`call(transport)` on one replica (others if it is going away), retried as the policy says."""
        return await with_retries(lambda: self._replicas.run(call, doing), self.retry_policy, doing,
                                  self.attempt_counts)


def _check_settings(timeout_s: float, retries: int, max_in_flight: int) -> None:
    if not timeout_s > 0:
        raise ClientError(f"timeout_s must be positive, got {timeout_s}")
    if retries < 0:
        raise ClientError(f"retries must be 0 or more, got {retries}")
    if max_in_flight < 1:
        raise ClientError(f"max_in_flight must be at least 1, got {max_in_flight}")
