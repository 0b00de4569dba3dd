"""Triton Python-backend model that does no work: TEXT in, the same TEXT out as ECHO.

Served by `python -m perf` beside the built repository (runtime `triton-echo`), it
measures what one request to a Python-backend model costs on this machine: perf_analyzer's
request through gRPC or HTTP, Triton's scheduler, the shared-memory hand-off to the stub
process and back. The ensemble runs two Python models (tokenizer, encoder) behind one
client request, the fused model one; the rest of their latency is tokenization and ONNX
Runtime. Copied into a scratch repository as `perf-echo/1/model.py`; it imports nothing
but Triton's own utilities.
"""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("ECHO", pb_utils.get_input_tensor_by_name(
            request, "TEXT").as_numpy())]) for request in requests]
