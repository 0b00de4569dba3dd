"""The six runtimes of the study, each as `call(texts)` doing tokenization + model + pooling.

In-process: PyTorch eager and TorchScript (transformers' default attention, tokenizer of the
checkpoint), ONNX Runtime on the build's fused FP32 graph and on its INT8 graph. Served: the
build's `<name>-fused` model and `<name>` ensemble on a local tritonserver, through the
project's tritonclient wrapper. Every one answers the same texts, one request at a time.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..baselines import MAX_LENGTH, OrtPipeline, TorchPipeline

Call = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Runtime:
    key: str
    title: str
    served: bool = False      # through tritonserver: measured with the server's own threads only


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("pytorch", "PyTorch eager"),
    Runtime("torchscript", "TorchScript (traced)"),
    Runtime("ort-fp32", "ONNX Runtime FP32 fused"),
    Runtime("ort-int8", "ONNX Runtime INT8"),
    Runtime("triton-fused", "Triton fused model", served=True),
    Runtime("triton-ensemble", "Triton ensemble", served=True),
)
BY_KEY = {runtime.key: runtime for runtime in RUNTIMES}


@dataclass(frozen=True)
class ModelPaths:
    """What the runtimes of one architecture load."""
    checkpoint: Path
    fp32_onnx: Path
    int8_onnx: Path
    tokenizer_json: Path


TORCH_RUNTIMES = ("pytorch", "torchscript")


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def ort_call(onnx_path: Path, tokenizer_json: Path, threads: int) -> Call:
    return OrtPipeline(onnx_path, tokenizer_json, intra_op_threads=threads)


def torch_call(checkpoint: Path, threads: int) -> Call:
    set_torch_threads(threads)
    return TorchPipeline(checkpoint)


class TracedPipeline(TorchPipeline):
    """TorchPipeline with the encoder traced by torch.jit.trace, once per input shape.

    A trace records one shape's path through Python (transformers builds its attention mask
    from the sequence length there), so each (batch, length) gets its own trace, made in the
    warm-up request and reused after: what a user who traces for fixed shapes deploys."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(checkpoint)
        self.traces: dict[tuple[int, ...], Any] = {}
        self.forward_arguments = set(inspect.signature(self.model.forward).parameters)

    def _traced(self, feed: dict[str, Any]) -> Any:
        shape = tuple(feed["input_ids"].shape)
        if shape not in self.traces:
            # The tracer warns that shape checks become constants: expected, one trace per shape.
            with self.torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", self.torch.jit.TracerWarning)
                self.traces[shape] = self.torch.jit.trace(self.model, example_kwarg_inputs=dict(feed), strict=False,
                                                          check_trace=False)
        return self.traces[shape]

    def __call__(self, texts: list[str]) -> Any:
        torch = self.torch
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        # A trace takes exactly forward()'s arguments: DistilBERT has no token_type_ids.
        batch = {name: value for name, value in encoded.items() if name in self.forward_arguments}
        traced = self._traced(batch)
        with torch.inference_mode():
            output = traced(**batch)
            hidden = output["last_hidden_state"] if isinstance(output, dict) else output[0]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def torchscript_call(checkpoint: Path, threads: int) -> Call:
    set_torch_threads(threads)
    return TracedPipeline(checkpoint)


def in_process_call(runtime: Runtime, paths: ModelPaths, threads: int) -> Call:
    """The call that measures `runtime` in this process with `threads` compute threads."""
    if runtime.key == "pytorch":
        return torch_call(paths.checkpoint, threads)
    if runtime.key == "torchscript":
        return torchscript_call(paths.checkpoint, threads)
    onnx_path = paths.fp32_onnx if runtime.key == "ort-fp32" else paths.int8_onnx
    return ort_call(onnx_path, paths.tokenizer_json, threads)


@contextlib.contextmanager
def served_calls(repository: Path, name: str, log_file: Path) -> Iterator[dict[str, Call]]:
    """A local tritonserver on the repository for the block; a call per served runtime."""
    from .._modelrepo import TEXT_INPUT, ModelNames
    from ..triton import TritonClient, triton_server

    names = ModelNames.of(name)
    with triton_server(repository, log_file=log_file) as server, TritonClient(server) as client:
        yield {"triton-fused": lambda texts: client.infer_texts(names.fused, TEXT_INPUT, texts),
               "triton-ensemble": lambda texts: client.infer_texts(names.ensemble, TEXT_INPUT, texts)}
