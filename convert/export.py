"""Step 1: the PyTorch serving module to ONNX, with dynamic batch and sequence axes."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .reference import Reference

OPSET = 17


def _example_inputs(reference: Reference) -> tuple[torch.Tensor, ...]:
    # Two rows of different content (not constants) with padding in the second, so the
    # traced graph carries the attention mask through pooling. Ids inside any vocabulary
    # (tiny ones included) and never the pad id, which RoBERTa's position ids depend on.
    ids = [i % reference.vocab_size for i in (5, 17, 29, 41, 53, 67, 79)]
    ids = [i if i != reference.pad_id else i + 1 for i in ids]
    input_ids = torch.tensor([ids, ids[:3] + [reference.pad_id] * 4])
    attention_mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4])
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
