"""Triton Python-backend model that runs the encoder with ONNX Runtime on the CPU.

The CPU build of Triton has no ONNX Runtime backend, so this model stands in for it.
Requests of different sequence lengths arrive together (the inputs allow ragged
batches): they are padded to the longest, run as one batch and split again. Padding
does not change a sentence's output: the attention mask excludes it, and the build's
validation checks that batched outputs equal one-by-one outputs.

ONNX Runtime's dynamic INT8 is the exception: it scales activations per tensor, so a
sentence's output would depend on the other sentences of its batch (top-1 flips for a few
percent of MiniLM intents). For such graphs `row_by_row` runs every sentence alone,
unpadded, which makes a batch's outputs exactly its sentences' one-by-one outputs. The
build's per-token INT8 (convert/token_int8.py) scales each token alone and runs batched.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, by the unit tests
    pb_utils = None


def make_session(model_path: str | Path, intra_op_threads: int, spin: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning: a worker thread busy-waits a moment for the next parallel section instead of
    # sleeping. On an idle machine it saved a few percent of batch-1 latency (perf/NOTES.md);
    # where other processes want the cores it halved batch-32 throughput (docs/throughput.md),
    # so the build leaves it off unless given --spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def pad_and_stack(batches: list[dict[str, np.ndarray]], pad_id: int = 0) -> tuple[dict[str, np.ndarray], list[int]]:
    """Stack per-request [n, seq] tensors into one [sum n, max seq] batch; returns the row counts."""
    longest = max(tensors["input_ids"].shape[1] for tensors in batches)
    stacked = {}
    for name in batches[0]:
        fill = pad_id if name == "input_ids" else 0
        padded = [np.pad(t[name], ((0, 0), (0, longest - t[name].shape[1])), constant_values=fill)
                  for t in batches]
        stacked[name] = np.concatenate(padded)
    return stacked, [t["input_ids"].shape[0] for t in batches]


def run_batch(session: ort.InferenceSession, feeds: dict[str, np.ndarray], output_names: list[str],
              row_by_row: bool) -> list[np.ndarray]:
    """One session run for the batch, or one per row with the row's padding stripped."""
    if not row_by_row:
        return session.run(output_names, feeds)
    lengths = feeds["attention_mask"].sum(axis=1)
    rows = [session.run(output_names, {name: value[i:i + 1, :max(int(lengths[i]), 1)] for name, value in feeds.items()})
            for i in range(len(lengths))]
    return [np.concatenate([row[k] for row in rows]) for k in range(len(output_names))]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_file = Path(args["model_repository"]) / args["model_version"] / parameters.get("onnx_file", "model.onnx")
        threads = int(parameters.get("intra_op_threads", "0")) or os.cpu_count() or 1
        self.session = make_session(model_file, threads, parameters.get("spin", "0") == "1")
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.pad_id = int(parameters.get("pad_id", "0"))
        self.row_by_row = parameters.get("row_by_row", "0") == "1"

    def execute(self, requests):
        batches = [{name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
                   for request in requests]
        try:
            feeds, rows = pad_and_stack(batches, self.pad_id)
            outputs = run_batch(self.session, feeds, self.output_names, self.row_by_row)
        except Exception as error:  # a shape or dtype ORT refuses: answer every request, stay up
            message = f"encoder could not run this batch: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        responses, start = [], 0
        for count in rows:
            tensors = [pb_utils.Tensor(name, value[start:start + count])
                       for name, value in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(tensors))
            start += count
        return responses
