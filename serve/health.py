"""Asking a starting server, over its HTTP API, whether it is up and how its models fared.

Plain urllib on purpose: the launcher polls these while the server starts, and a
refused connection just means "not yet".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

PROBE_TIMEOUT_S = 2.0
# No proxies: the server is local, and an http_proxy in the environment must not catch it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ModelState:
    """One row of Triton's repository index."""
    name: str
    version: str
    state: str    # READY, UNAVAILABLE, LOADING, UNLOADING, or "" for never loaded
    reason: str

    @property
    def failed(self) -> bool:
        # "unloaded" is Triton's reason after an unload request: a choice, not a failure.
        return self.state == "UNAVAILABLE" and self.reason not in ("", "unloaded")


class HttpProbe:
    """Health and repository-index calls against `host:port`, with the admin headers."""

    def __init__(self, http_url: str, admin_headers: dict[str, str]) -> None:
        self._base = f"http://{http_url}"
        self._admin_headers = admin_headers

    def is_live(self) -> bool:
        return self._status("/v2/health/live") == 200

    def is_ready(self) -> bool:
        return self._status("/v2/health/ready") == 200

    def repository_index(self) -> list[ModelState]:
        """Every model folder Triton sees, with its state and, for failures, the reason."""
        request = urllib.request.Request(
            self._base + "/v2/repository/index", data=b"{}", method="POST",
            headers={"Content-Type": "application/json", **self._admin_headers},
        )
        with _OPENER.open(request, timeout=PROBE_TIMEOUT_S) as response:
            rows = json.loads(response.read() or b"[]")
        return [
            ModelState(row["name"], row.get("version", ""), row.get("state", ""), row.get("reason", ""))
            for row in rows
        ]

    def _status(self, path: str) -> int | None:
        """HTTP status of a GET, or None while nothing answers."""
        try:
            with _OPENER.open(self._base + path, timeout=PROBE_TIMEOUT_S) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
