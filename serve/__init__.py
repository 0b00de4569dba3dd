"""serve: run the real Triton Inference Server (from the nvidia-pytriton wheel) on the CPU, no Docker.

    from serve import LocalTritonServer, ServerStartError   # installed: from triton_encoders.serve import ...
    with LocalTritonServer(Path("triton_models")) as server:
        tritonclient.grpc.InferenceServerClient(server.grpc_url)

`python -m serve` does the same from a terminal; `python -m serve install` only
prepares the server tree under `.venv/tritonserver/` (the launcher does it lazily).
"""

from .errors import ServerStartError
from .install import TritonInstall, install
from .server import LocalTritonServer

__all__ = ["LocalTritonServer", "ServerStartError", "TritonInstall", "install"]
