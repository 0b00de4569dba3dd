"""client: classify or embed texts with a Triton encoder ensemble, over gRPC or HTTP.

    from client import EncoderClient   # installed with pip: from triton_encoders.client import ...
    with EncoderClient("grpc://127.0.0.1:8001", model="minilm-intent") as client:
        for prediction in client.classify(["rent a van in Paris"], top_k=3):
            print(prediction.label, prediction.score, prediction.top_k)

`AsyncEncoderClient` is the asyncio twin; `python -m client` the command line.
See client/README.md.
"""
from .async_client import AsyncEncoderClient
from .endpoint import Endpoint, parse_endpoint
from .errors import (
    BackendCrashed,
    ClientError,
    InferenceFailed,
    InputRejected,
    ModelNotReady,
    ModelUnavailable,
    RequestTimeout,
    ServerUnreachable,
)
from .model_info import ModelInfo
from .payload import Prediction
from .retry import AttemptCounts
from .sync_client import EncoderClient

__all__ = [
    "AsyncEncoderClient", "EncoderClient", "Endpoint", "parse_endpoint", "ModelInfo", "Prediction", "AttemptCounts",
    "ClientError", "ServerUnreachable", "ModelNotReady", "ModelUnavailable", "InputRejected", "RequestTimeout",
    "InferenceFailed", "BackendCrashed",
]
