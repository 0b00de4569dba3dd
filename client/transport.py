"""The two protocols behind one small interface: tritonclient.grpc.aio and tritonclient.http.aio.

Everything else in the client is protocol-free. The differences kept here:
- the timeout: gRPC sends it as the call's deadline (the server sees it too);
  aiohttp applies it to the whole HTTP request through its session;
- the JSON of model metadata and config, which `model_info.from_server` smooths over;
- which module's InferInput / InferRequestedOutput build the request;
- reconnecting: both reconnect by themselves to a server that comes back on the same
  address (gRPC's channel, aiohttp's connection pool), so a client outlives a server
  restart. gRPC waits between connection attempts with a backoff that grows to 120 s by
  default, which would leave a client failing for up to two minutes after a long outage
  although the server is back; it is capped at 1 s here.
"""
from __future__ import annotations

from types import ModuleType

import tritonclient.grpc as grpc_protocol
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as http_protocol
import tritonclient.http.aio as http_aio

from .endpoint import Endpoint


def grpc_channel_args() -> list[tuple[str, int | bool]]:
    """tritonclient's own channel arguments (passing any replaces them all) plus a short reconnect backoff."""
    keepalive = grpc_protocol.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", grpc_protocol.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpc_protocol.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


class GrpcTransport:
    protocol: ModuleType = grpc_protocol

    def __init__(self, endpoint: Endpoint, timeout_s: float, max_in_flight: int) -> None:
        # One channel multiplexes all calls.
        self._client = grpc_aio.InferenceServerClient(endpoint.address, channel_args=grpc_channel_args())
        self._timeout_s = timeout_s

    async def model_metadata(self, model: str) -> dict:
        return await self._client.get_model_metadata(model, as_json=True, client_timeout=self._timeout_s)

    async def model_config(self, model: str) -> dict:
        return await self._client.get_model_config(model, as_json=True, client_timeout=self._timeout_s)

    async def is_model_ready(self, model: str) -> bool:
        return await self._client.is_model_ready(model, client_timeout=self._timeout_s)

    async def infer(self, model: str, inputs: list, outputs: list):
        return await self._client.infer(model, inputs, outputs=outputs, client_timeout=self._timeout_s)

    async def close(self) -> None:
        await self._client.close()


class HttpTransport:
    protocol: ModuleType = http_protocol

    def __init__(self, endpoint: Endpoint, timeout_s: float, max_in_flight: int) -> None:
        # conn_timeout is aiohttp's total timeout for each request; conn_limit bounds connections.
        self._client = http_aio.InferenceServerClient(endpoint.address, conn_timeout=timeout_s,
                                                      conn_limit=max_in_flight)

    async def model_metadata(self, model: str) -> dict:
        return await self._client.get_model_metadata(model)

    async def model_config(self, model: str) -> dict:
        return await self._client.get_model_config(model)

    async def is_model_ready(self, model: str) -> bool:
        return await self._client.is_model_ready(model)

    async def infer(self, model: str, inputs: list, outputs: list):
        return await self._client.infer(model, inputs, outputs=outputs)

    async def close(self) -> None:
        await self._client.close()


Transport = GrpcTransport | HttpTransport


def open_transport(endpoint: Endpoint, timeout_s: float, max_in_flight: int) -> Transport:
    """Must run inside the event loop that will use it (aiohttp and grpc.aio bind to it)."""
    kind = GrpcTransport if endpoint.protocol == "grpc" else HttpTransport
    return kind(endpoint, timeout_s, max_in_flight)
