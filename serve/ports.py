"""Free ports for a server, and a check that a port asked for is really free."""

from __future__ import annotations

import socket

from .errors import ServerStartError


def free_port(host: str) -> int:
    """A port the OS says is free on `host` now. Another process may take it before
    Triton binds it; the launcher retries with fresh ports when that happens."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port_free(host: str, port: int, role: str) -> None:
    """Raise ServerStartError naming the port if something already listens on it."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as Triton sets it: a socket in TIME_WAIT is no conflict, a listener is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServerStartError(
                f"{role} port {port} on {host} is already in use ({error.strerror}). "
                f"Stop what listens there (`ss -ltnp 'sport = :{port}'` shows it), "
                f"or pick another port (--{role.lower()}-port), or leave it unset for a free one."
            ) from None


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
