"""Talking to Triton for the benchmarks: the given server or a local one, over gRPC or HTTP.

    with triton_server(repository, grpc_url=None, http_url=None, log_file=...) as server:
        with TritonClient(server) as client:       # gRPC when the server has it, else HTTP
            client.model_config("minilm-intent")   # JSON, the same from both protocols

`triton_server` yields the server the user named by URL, or starts the local CPU server
(serve.LocalTritonServer) on the repository when no URL is given. tritonclient's two
protocols answer in slightly different JSON; TritonClient is the one place that knows how.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import PerfError
from .stages import stage

# Hosts that are this machine: shared memory and memory sampling need the server here.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class TritonServer:
    """Where the load goes and which process to watch."""

    grpc_url: str | None
    http_url: str | None
    pid: int | None            # the server's process on this machine; None for a remote one
    started_here: bool
    log_file: str | None = None

    @property
    def protocol(self) -> str:
        return "grpc" if self.grpc_url else "http"

    @property
    def url(self) -> str:
        return self.grpc_url or self.http_url or ""

    def url_for(self, protocol: str) -> str | None:
        return self.grpc_url if protocol == "grpc" else self.http_url


def is_local(url: str) -> bool:
    return url.rpartition(":")[0] in LOCAL_HOSTS


@contextlib.contextmanager
def triton_server(repository: Path, *, grpc_url: str | None = None, http_url: str | None = None,
                  server_pid: int | None = None, log_file: Path, extra_args: Iterable[str] = (),
                  open_shared_memory_api: bool = False) -> Iterator[TritonServer]:
    """The server at the given URLs (its pid found by its port when it listens here), or a
    local one started on `repository` and stopped at the end."""
    if grpc_url or http_url:
        given = grpc_url or http_url or ""
        yield TritonServer(grpc_url, http_url, server_pid or listening_pid(given), started_here=False)
        return
    try:
        serve = stage("serve")
        LocalTritonServer, ServerStartError = serve.LocalTritonServer, serve.ServerStartError
    except ImportError as error:
        raise PerfError(f"cannot start a local Triton server ({error}); pass --http-url/--grpc-url "
                        "of a running server instead") from None
    local = LocalTritonServer(repository, log_file=log_file, open_shared_memory_api=open_shared_memory_api,
                              extra_args=list(extra_args))
    try:
        local.start()
    except ServerStartError as error:
        raise PerfError(f"the local Triton server did not start: {error}") from None
    try:
        yield TritonServer(local.grpc_url, local.http_url, local.pid, started_here=True, log_file=str(log_file))
    finally:
        local.stop()


def listening_pid(url: str) -> int | None:
    """The local process listening on url's port, or None (a remote server: no memory figures)."""
    import psutil

    host, _, port = url.rpartition(":")
    if host not in LOCAL_HOSTS or not port.isdigit():
        return None
    try:
        connections = psutil.net_connections("tcp")
    except psutil.AccessDenied:
        return None
    return next((c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)
                 and c.pid is not None), None)


class TritonClient:
    """tritonclient on the server's preferred protocol, every answer as the same JSON."""

    def __init__(self, server: TritonServer) -> None:
        self.is_grpc = bool(server.grpc_url)
        if self.is_grpc:
            import tritonclient.grpc as protocol
        else:
            import tritonclient.http as protocol
        self.protocol = protocol
        self.client = protocol.InferenceServerClient(server.url)

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def _json(self, method: str, *args: Any) -> dict:
        return getattr(self.client, method)(*args, **({"as_json": True} if self.is_grpc else {}))

    def server_metadata(self) -> dict:
        return self._json("get_server_metadata")

    def model_config(self, model: str) -> dict:
        answer = self._json("get_model_config", model)
        return answer["config"] if self.is_grpc else answer

    def model_statistics(self, model: str) -> dict:
        return self._json("get_inference_statistics", model)["model_stats"][0]

    def infer_texts(self, model: str, input_name: str, texts: list[str]) -> None:
        """One request of len(texts) texts to a model taking [batch, 1] BYTES."""
        batch = np.array([[text.encode()] for text in texts], dtype=np.object_)
        request = self.protocol.InferInput(input_name, list(batch.shape), "BYTES")
        request.set_data_from_numpy(batch)
        self.client.infer(model, [request])


def server_counts(server: TritonServer, models: list[str]) -> dict[str, dict[str, int]]:
    """Triton's own counts per model: successful and failed requests, inferences (texts), executions.

    Triton updates them just after it answers, so read until two reads 0.2 s apart agree."""
    with TritonClient(server) as client:
        previous = _read_counts(client, models)
        for _ in range(25):
            time.sleep(0.2)
            current = _read_counts(client, models)
            if current == previous:
                break
            previous = current
        return previous


def _read_counts(client: TritonClient, models: list[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for model in models:
        stats = client.model_statistics(model)
        inference = stats.get("inference_stats", {})
        counts[model] = {
            "success": int(inference.get("success", {}).get("count", 0)),
            "fail": int(inference.get("fail", {}).get("count", 0)),
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
        }
    return counts


def server_metadata(server: TritonServer) -> dict[str, Any]:
    """Name and version of the server, for the results; an error is recorded, not raised."""
    try:
        with TritonClient(server) as client:
            metadata = client.server_metadata()
        return {"name": metadata.get("name"), "version": metadata.get("version")}
    except Exception as error:  # metadata is a nicety; the measurements still stand
        return {"error": str(error)}
