"""The server's health, asked over its HTTP API: is it up, and how did its models fare
(HttpProbe). The watchdog that keeps Python-backend models alive is serve.watchdog.

Plain urllib on purpose: the launcher polls these while the server starts, and a
refused connection just means "not yet".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

PROBE_TIMEOUT_S = 2.0
LOAD_TIMEOUT_S = 300.0       # a load answers once the model is loaded (or has failed)
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


class RepositoryRequestFailed(OSError):
    """Triton refused a load or unload; the message quotes its reason."""


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
        rows = json.loads(self._post("/v2/repository/index", PROBE_TIMEOUT_S) or b"[]")
        return [
            ModelState(row["name"], row.get("version", ""), row.get("state", ""), row.get("reason", ""))
            for row in rows
        ]

    def load_model(self, model: str) -> None:
        """Load `model` (explicit model control); returns once it is loaded, raises with Triton's reason."""
        self._post(f"/v2/repository/models/{model}/load", LOAD_TIMEOUT_S)

    def unload_model(self, model: str) -> None:
        """Ask Triton to unload `model`; it answers at once and unloads once in-flight requests are done."""
        self._post(f"/v2/repository/models/{model}/unload", PROBE_TIMEOUT_S)

    def _post(self, path: str, timeout_s: float) -> bytes:
        request = urllib.request.Request(
            self._base + path, data=b"{}", method="POST",
            headers={"Content-Type": "application/json", **self._admin_headers},
        )
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise RepositoryRequestFailed(f"Triton refused {path} (HTTP {error.code}): "
                                          f"{_triton_message(error.read())}") from None

    def _status(self, path: str) -> int | None:
        """HTTP status of a GET, or None while nothing answers."""
        try:
            with _OPENER.open(self._base + path, timeout=PROBE_TIMEOUT_S) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None


def _triton_message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip() or "(no message)"
