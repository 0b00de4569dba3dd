"""Typed client errors, and the translation of what tritonclient, gRPC and aiohttp raise into them.

Every failure a caller can act on is one `ClientError` subclass with a message that
says what happened and, where the server said why, quotes it:

    ServerUnreachable  nothing answers at the URL, or the server is shutting down
                       (connection refused/reset, gRPC UNAVAILABLE, HTTP 503): retried
    ModelNotReady      the server answers but does not serve that model (unknown, loading, failed)
      ModelUnavailable   ... it knows the model but has no version loaded right now (loading,
                         being reloaded, unloading while the server stops, or failed): retried
    InputRejected      the request was refused for its content (Triton's message quoted)
    RequestTimeout     no answer within the client's timeout: never retried, the server
                       may still be working on it
    InferenceFailed    the server accepted the request and failed while running it
      BackendCrashed     ... because the process running the model's Python code died: retried

Retrying is safe for every retried case: inference on an encoder has no side effects.
"""
from __future__ import annotations

import re

from tritonclient.utils import InferenceServerException


class ClientError(Exception):
    """Base of every error this client raises."""


class ServerUnreachable(ClientError):
    """No Triton server answers at the URL (refused, reset, or UNAVAILABLE)."""


class ModelNotReady(ClientError):
    """The server answers, but the model is unknown to it or not ready."""


class ModelUnavailable(ModelNotReady):
    """The server knows the model but no version of it is loaded now (Triton: "has no available
    versions"): it is loading, being reloaded, being unloaded (as when the server stops), or it
    failed to load. The first cases pass within seconds, so it is retried."""


class InputRejected(ClientError):
    """The input was refused, by this client's checks or by the server (message quoted)."""


class RequestTimeout(ClientError):
    """The server did not answer within the client's timeout."""


class InferenceFailed(ClientError):
    """The server took the request and failed while running it (HTTP 500, gRPC INTERNAL)."""


class BackendCrashed(InferenceFailed):
    """The Python-backend process (Triton's "stub") that runs the model died. Triton 2.51 answers
    every request for that model with "Stub process '<model>_0_0' is not healthy." and does not
    restart it; a server run by `python -m serve` (LocalTritonServer) reloads the model within
    seconds, so it is retried."""


# Triton's status for each outcome: gRPC status names (without "StatusCode.") and HTTP codes.
_UNREACHABLE = {"UNAVAILABLE", "503"}
_NOT_FOUND = {"NOT_FOUND", "404"}
_REJECTED = {"INVALID_ARGUMENT", "400", "OUT_OF_RANGE", "FAILED_PRECONDITION", "UNIMPLEMENTED"}
_TIMEOUT = {"DEADLINE_EXCEEDED", "504", "408"}
# Triton says "Request for unknown model: 'x' has no available versions" (UNAVAILABLE)
# for a model that failed to load or is still loading: that is the model, not the server.
_MODEL_PROBLEM = "unknown model"
# Known to the repository, nothing loaded now: "... has no available versions" (unloaded,
# loading, failed) or "... version 1 is not at ready state" (in the middle of a load or unload).
_NOT_LOADED_NOW = ("has no available versions", "is not at ready state")
# The Python backend's words for a stub that died (killed, out of memory, segfault in model code).
_STUB_DIED = re.compile(r"Stub process ('[^']*' )?is not healthy")
_RETRIED = (ServerUnreachable, ModelUnavailable, BackendCrashed)


def translate(error: BaseException, doing: str) -> ClientError:
    """The typed error for `error`, raised while `doing` (e.g. "classify 3 texts with m at grpc://...")."""
    if isinstance(error, ClientError):
        return error
    if isinstance(error, InferenceServerException):
        return _from_triton(error, doing)
    if isinstance(error, TimeoutError):  # socket, asyncio and aiohttp timeouts alike
        return RequestTimeout(f"no answer within the timeout while trying to {doing}; "
                              "raise timeout_s (--timeout) or send fewer texts per call")
    if isinstance(error, OSError) or _is_aiohttp_connection_error(error):  # refused, reset, DNS
        return ServerUnreachable(f"cannot reach Triton to {doing}: {error}")
    return ClientError(f"could not {doing}: {type(error).__name__}: {error}")


def is_retryable(error: ClientError) -> bool:
    """Worth asking again: a server or a model that is not (yet, or any more) there, or a
    model process that died and is being restored. Never a refused input or a timeout."""
    return isinstance(error, _RETRIED)


def gave_up(error: ClientError, attempts: int) -> ClientError:
    """`error` after `attempts` tries, saying so and what to check next."""
    if attempts <= 1 or not isinstance(error, _RETRIED):
        return error
    if isinstance(error, ServerUnreachable):
        hint = "is the server running? start one with `python -m serve`"
    elif isinstance(error, ModelUnavailable):
        hint = "is it still loading, or did it fail to load? the server's log or `python -m serve` says which"
    else:
        hint = ("the model was not restored: reload it (explicit model control) or restart the server; "
                "`python -m serve` does this by itself")
    return type(error)(f"{error} (gave up after {attempts} attempts; {hint})")


def _from_triton(error: InferenceServerException, doing: str) -> ClientError:
    status = (error.status() or "").removeprefix("StatusCode.")
    message = error.message() or "(no message)"
    if _STUB_DIED.search(message):
        return BackendCrashed(f"the process running the model's Python code died, so Triton cannot {doing}: "
                              f"{message}")
    if any(words in message for words in _NOT_LOADED_NOW):
        return ModelUnavailable(f"Triton cannot {doing} now: {message}")
    if status in _NOT_FOUND or _MODEL_PROBLEM in message:
        return ModelNotReady(f"Triton cannot {doing}: {message}")
    if status in _UNREACHABLE:
        return ServerUnreachable(f"cannot reach Triton to {doing}: {message}")
    if status in _TIMEOUT:
        return RequestTimeout(f"no answer within the timeout while trying to {doing} ({message}); "
                              "raise timeout_s (--timeout) or send fewer texts per call")
    if status in _REJECTED:
        return InputRejected(f"Triton rejected the request to {doing}: {message}")
    return InferenceFailed(f"Triton failed to {doing} (status {status or 'unknown'}): {message}")


def _is_aiohttp_connection_error(error: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:
        return False
    return isinstance(error, aiohttp.ClientConnectionError)
