"""The two protocols behind one small interface: tritonclient.grpc.aio and tritonclient.http.aio,
and how each reaches several replicas.

Everything else in the client is protocol-free. The differences kept here:
- the timeout: gRPC sends it as the call's deadline (the server sees it too);
  aiohttp applies it to the whole HTTP request through its session;
- the JSON of model metadata and config, which `model_info.from_server` smooths over;
- which module's InferInput / InferRequestedOutput build the request;
- spreading calls over replicas. gRPC does it itself: one channel with the round-robin
  policy keeps a connection to every address of its target and sends each call to the
  next ready one; its target is the one name given (gRPC's DNS resolver finds every
  record, and finds them again when connections drop: a headless Service's pods), or
  `ipv4:a:p,b:p` for a list of IP addresses. A list holding host names (which one gRPC
  target cannot express) gets a channel per name, used in turn by client/replicas.py.
  HTTP has no such thing in aiohttp: every address is resolved here (loop.getaddrinfo,
  again every few seconds) and each server address gets its own connection pool, used in
  turn with failover by client/replicas.py;
- reconnecting: both reconnect by themselves to a server that comes back on the same
  address (gRPC's channel, aiohttp's connection pool), so a client outlives a server
  restart. gRPC waits between connection attempts with a backoff that grows to 120 s by
  default, which would leave a client failing for up to two minutes after a long outage
  although the server is back; it is capped at 1 s here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Sequence

import tritonclient.grpc as grpc_protocol
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as http_protocol
import tritonclient.http.aio as http_aio

from .endpoint import Endpoint, is_ip_literal, join_address, split_address
from .replicas import Replicas
from .retry import AttemptCounts

ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def grpc_channel_args() -> list[tuple[str, int | bool | str]]:
    """tritonclient's own channel arguments (passing any replaces them all), a short reconnect
    backoff, and the round-robin policy (a DNS record's own service config may not change it)."""
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
        ("grpc.service_config", ROUND_ROBIN),
        ("grpc.service_config_disable_resolution", 1),
    ]


def grpc_targets(addresses: Sequence[str]) -> list[str]:
    """One gRPC target per channel: all IPv4 addresses in one, all IPv6 in another, a channel per name."""
    families: dict[int, list[str]] = {4: [], 6: []}
    names = []
    for address in addresses:
        host, _ = split_address(address)
        if is_ip_literal(host):
            families[ipaddress.ip_address(host).version].append(address)
        else:
            names.append(address)
    targets = [group[0] if len(group) == 1 else f"ipv{version}:{','.join(group)}"
               for version, group in families.items() if group]
    return targets + names


class GrpcTransport:
    protocol = grpc_protocol

    def __init__(self, target: str, timeout_s: float, max_in_flight: int) -> None:
        # One channel multiplexes all calls (over one connection per server with round-robin).
        self._client = grpc_aio.InferenceServerClient(target, channel_args=grpc_channel_args())
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
    protocol = http_protocol

    def __init__(self, address: str, timeout_s: float, max_in_flight: int) -> None:
        # conn_timeout is aiohttp's total timeout for each request; conn_limit bounds connections.
        self._client = http_aio.InferenceServerClient(address, conn_timeout=timeout_s, conn_limit=max_in_flight)

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


async def resolve_addresses(addresses: Sequence[str]) -> list[str]:
    """Every "ip:port" the addresses stand for, in order; a name that does not resolve now stays
    as it is, so that a call to it fails with the resolver's own words."""
    loop = asyncio.get_running_loop()
    resolved = []
    for address in addresses:
        host, port = split_address(address)
        if is_ip_literal(host):
            resolved.append(address)
            continue
        try:
            records = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            resolved.append(address)
            continue
        resolved += [join_address(sockaddr[0], port) for *_, sockaddr in records]
    return list(dict.fromkeys(resolved))


def open_replicas(endpoint: Endpoint, timeout_s: float, max_in_flight: int, counts: AttemptCounts) -> Replicas:
    """Must run inside the event loop that will use it (aiohttp and grpc.aio bind to it)."""
    if endpoint.protocol == "grpc":
        return Replicas(grpc_targets(endpoint.addresses), lambda target: GrpcTransport(target, timeout_s, max_in_flight),
                        grpc_protocol, counts)
    return Replicas(endpoint.addresses, lambda address: HttpTransport(address, timeout_s, max_in_flight),
                    http_protocol, counts, resolve=resolve_addresses)
