"""Step 1: the PyTorch serving module to ONNX, with dynamic batch and sequence axes."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .reference import Reference

OPSET = 17


def _example_inputs(reference: Reference) -> tuple[torch.Tensor, ...]:
    # Two rows of different content (not constants) with padding in the second, so the
    # traced graph carries the attention mask through pooling.
    input_ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 2748, 102, 0, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask,
               "token_type_ids": torch.zeros_like(input_ids)}
    return tuple(tensors[name] for name in reference.input_names)


def export_onnx(reference: Reference, path: Path) -> Path:
    """Export with the TorchScript-based exporter (dynamo=False), which keeps the graph
    in the shape ONNX Runtime's transformer optimizer recognises and fuses."""
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in reference.input_names}
    dynamic_axes.update({name: {0: "batch"} for name in reference.output_names})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
        torch.onnx.export(reference.model, _example_inputs(reference), str(path),
                          input_names=reference.input_names, output_names=reference.output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)
    return path
