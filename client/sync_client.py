"""EncoderClient: the blocking face of AsyncEncoderClient.

    with EncoderClient("http://127.0.0.1:8000") as client:
        print(client.classify(["what's my balance"])[0].label)

Why not tritonclient's blocking clients: concurrent chunks would need threads for gRPC
and gevent greenlets for HTTP (whose sync client is gevent-based and prints every failed
greenlet's traceback). Running the asyncio client on a private event-loop thread gives
both protocols the same chunking, timeouts and retries, written once.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Coroutine, Sequence, TypeVar

import numpy as np

from .async_client import (DEFAULT_MAX_IN_FLIGHT, DEFAULT_MODEL, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S,
                           AsyncEncoderClient)
from .endpoint import Endpoint
from .model_info import ModelInfo
from .payload import Prediction, Text
from .retry import AttemptCounts

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread; run() blocks on one coroutine."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="encoder-client-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[object, object, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: stop the work in the loop too
            raise

    @property
    def stopped(self) -> bool:
        return self._loop.is_closed()

    def stop(self) -> None:
        if self.stopped:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class EncoderClient:
    """Same arguments and methods as AsyncEncoderClient, blocking. Connects on creation:
    raises ServerUnreachable or ModelNotReady right away if the model cannot be used."""

    def __init__(self, url: str | None = None, *, protocol: str | None = None, model: str = DEFAULT_MODEL,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self._async = AsyncEncoderClient(url, protocol=protocol, model=model, timeout_s=timeout_s,
                                         retries=retries, max_in_flight=max_in_flight)
        self._loop = _LoopThread()
        try:
            self._loop.run(self._async.open())
        except BaseException:
            self.close()
            raise

    @property
    def endpoint(self) -> Endpoint:
        return self._async.endpoint

    @property
    def info(self) -> ModelInfo:
        return self._async.info

    @property
    def attempt_counts(self) -> AttemptCounts:
        """Failed attempts that were made again (on another replica, or after a pause), by error type."""
        return self._async.attempt_counts

    def classify(self, texts: Sequence[Text], top_k: int = 1) -> list[Prediction]:
        return self._loop.run(self._async.classify(texts, top_k))

    def probabilities(self, texts: Sequence[Text]) -> np.ndarray:
        return self._loop.run(self._async.probabilities(texts))

    def embed(self, texts: Sequence[Text]) -> np.ndarray:
        return self._loop.run(self._async.embed(texts))

    def close(self) -> None:
        if self._loop.stopped:
            return
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> "EncoderClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
