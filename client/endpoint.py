"""Where the servers are and which protocol to speak.

    grpc://host:port                  one server (or one DNS name that resolves to many:
    http://host:port                  a Kubernetes headless Service gives one record per pod)
    grpc://host1:8001,host2:8001      several servers, requests spread across them
    host[:port][,host[:port]...]      the protocol from `protocol` (gRPC by default)

The scheme picks the protocol; without one, `protocol` does (gRPC by default), and a
missing port is Triton's default for that protocol (gRPC 8001, HTTP 8000). How requests
are spread is the transport's job (client/transport.py, client/replicas.py).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ClientError

PROTOCOLS = ("grpc", "http")
DEFAULT_PROTOCOL = "grpc"
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Endpoint:
    protocol: str                  # "grpc" or "http"
    addresses: tuple[str, ...]     # "host:port" each, as tritonclient wants them (no scheme); at least one

    @property
    def url(self) -> str:
        return f"{self.protocol}://{','.join(self.addresses)}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(url: str | None = None, protocol: str | None = None) -> Endpoint:
    """`url` may carry a scheme; `protocol` must agree with it when both are given."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ClientError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    url = (url or DEFAULT_HOST).strip()
    scheme, rest = _split_scheme(url)
    if scheme and protocol and scheme != protocol:
        raise ClientError(f"the URL {url!r} says {scheme} but the protocol asked for is {protocol}; drop one of them")
    chosen = scheme or protocol or DEFAULT_PROTOCOL
    addresses = tuple(_with_port(part.strip(), DEFAULT_PORTS[chosen], url) for part in rest.split(","))
    repeated = sorted({address for address in addresses if addresses.count(address) > 1})
    if repeated:
        raise ClientError(f"{', '.join(repeated)} appears more than once in {url!r}; name each server once")
    return Endpoint(chosen, addresses)


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port" (brackets removed)."""
    parts = urlsplit(f"//{address}")
    return parts.hostname, parts.port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_scheme(url: str) -> tuple[str | None, str]:
    if "://" not in url:
        return None, url
    scheme, rest = url.split("://", 1)
    if scheme == "dns":   # gRPC's own target syntax, as printed for a headless Service
        raise ClientError(f"{url!r} is a gRPC target, not a URL: write grpc://{rest.lstrip('/')} (a name with many "
                          "records is balanced over all of them)")
    if scheme not in PROTOCOLS:
        raise ClientError(f"unsupported URL scheme {scheme!r} in {url!r}: use grpc://host:port or http://host:port")
    if "://" in rest:
        raise ClientError(f"{url!r} names a scheme more than once: one scheme for the whole list, "
                          "e.g. grpc://host1:8001,host2:8001")
    return scheme, rest


def _with_port(address: str, default_port: int, url: str) -> str:
    # urlsplit knows IPv6 brackets and ports; a path after the address is a mistake.
    parts = urlsplit(f"//{address}")
    if not parts.hostname or parts.path.strip("/"):
        raise ClientError(f"cannot read a host[:port] from {address!r} in {url!r}; "
                          "example: grpc://127.0.0.1:8001 or grpc://host1:8001,host2:8001")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ClientError(f"the port in {url!r} is not a number between 0 and 65535") from None
    return join_address(parts.hostname, port)
