"""Typed client errors, and the translation of what tritonclient, gRPC and aiohttp raise into them.

Every failure a caller can act on is one `ClientError` subclass with a message that
says what happened and, where the server said why, quotes it:

    ServerUnreachable  nothing answers at the URL, or the server is shutting down
                       (connection refused/reset, gRPC UNAVAILABLE, HTTP 503): retried
    ModelNotReady      the server answers but does not serve that model (unknown, loading, failed)
    InputRejected      the request was refused for its content (Triton's message quoted)
    RequestTimeout     no answer within the client's timeout: never retried, the server
                       may still be working on it
    InferenceFailed    the server accepted the request and failed while running it
"""
from __future__ import annotations

from tritonclient.utils import InferenceServerException


class ClientError(Exception):
    """Base of every error this client raises."""


class ServerUnreachable(ClientError):
    """No Triton server answers at the URL (refused, reset, or UNAVAILABLE)."""


class ModelNotReady(ClientError):
    """The server answers, but the model is unknown to it or not ready."""


class InputRejected(ClientError):
    """The input was refused, by this client's checks or by the server (message quoted)."""


class RequestTimeout(ClientError):
    """The server did not answer within the client's timeout."""


class InferenceFailed(ClientError):
    """The server took the request and failed while running it (HTTP 500, gRPC INTERNAL)."""


# Triton's status for each outcome: gRPC status names (without "StatusCode.") and HTTP codes.
_UNREACHABLE = {"UNAVAILABLE", "503"}
_NOT_FOUND = {"NOT_FOUND", "404"}
_REJECTED = {"INVALID_ARGUMENT", "400", "OUT_OF_RANGE", "FAILED_PRECONDITION", "UNIMPLEMENTED"}
_TIMEOUT = {"DEADLINE_EXCEEDED", "504", "408"}
# Triton says "Request for unknown model: 'x' has no available versions" (UNAVAILABLE)
# for a model that failed to load or is still loading: that is the model, not the server.
_MODEL_PROBLEM = "unknown model"


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
    """Only a server that is not (yet, or any more) there is worth asking again."""
    return isinstance(error, ServerUnreachable)


def _from_triton(error: InferenceServerException, doing: str) -> ClientError:
    status = (error.status() or "").removeprefix("StatusCode.")
    message = error.message() or "(no message)"
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
