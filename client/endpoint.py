"""Where the server is and which protocol to speak: `grpc://host:port`, `http://host:port` or `host[:port]`.

The scheme picks the protocol; without one, `protocol` does (gRPC by default), and a
missing port is Triton's default for that protocol (gRPC 8001, HTTP 8000).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ClientError

PROTOCOLS = ("grpc", "http")
DEFAULT_PROTOCOL = "grpc"
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Endpoint:
    protocol: str      # "grpc" or "http"
    address: str       # "host:port", as tritonclient wants it (no scheme)

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(url: str | None = None, protocol: str | None = None) -> Endpoint:
    """`url` may carry a scheme; `protocol` must agree with it when both are given."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ClientError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    url = (url or DEFAULT_HOST).strip()
    scheme, address = _split_scheme(url)
    if scheme and protocol and scheme != protocol:
        raise ClientError(f"the URL {url!r} says {scheme} but the protocol asked for is {protocol}; drop one of them")
    chosen = scheme or protocol or DEFAULT_PROTOCOL
    return Endpoint(chosen, _with_port(address, DEFAULT_PORTS[chosen], url))


def _split_scheme(url: str) -> tuple[str | None, str]:
    if "://" not in url:
        return None, url
    scheme, rest = url.split("://", 1)
    if scheme not in PROTOCOLS:
        raise ClientError(f"unsupported URL scheme {scheme!r} in {url!r}: use grpc://host:port or http://host:port")
    return scheme, rest


def _with_port(address: str, default_port: int, url: str) -> str:
    # urlsplit knows IPv6 brackets and ports; a path after the address is a mistake.
    parts = urlsplit(f"//{address}")
    if not parts.hostname or parts.path.strip("/"):
        raise ClientError(f"cannot read a host[:port] from {url!r}; example: grpc://127.0.0.1:8001")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ClientError(f"the port in {url!r} is not a number between 0 and 65535") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"
