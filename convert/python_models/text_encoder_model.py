"""Triton Python-backend model: raw text in, encoder outputs out, in one model.

The same tokenization and ONNX Runtime code as the ensemble's two models (this folder
holds copies of tokenizer_model.py and onnx_encoder_model.py beside this model.py), but
one Python-backend hop instead of two and no ensemble scheduling between them: the
latency-first alternative to the ensemble, served beside it as `<name>-fused`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from onnx_encoder_model import make_session, run_batch  # noqa: E402  (copied beside this file)
from tokenizer_model import (  # noqa: E402
    MAX_REQUEST_TEXT_BYTES, InvalidText, check_request_size, decode_texts, encode, load_tokenizer,
)

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, by the unit tests
    pb_utils = None


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.max_length = int(parameters["max_length"])
        self.max_request_bytes = int(parameters.get("max_request_bytes", MAX_REQUEST_TEXT_BYTES))
        self.tokenizer = load_tokenizer(version_dir / "tokenizer.json", self.max_length)
        threads = int(parameters.get("intra_op_threads", "0")) or os.cpu_count() or 1
        self.session = make_session(version_dir / parameters.get("onnx_file", "model.onnx"), threads,
                                    parameters.get("spin", "0") == "1")
        self.row_by_row = parameters.get("row_by_row", "0") == "1"
        self.with_token_type_ids = "token_type_ids" in {i.name for i in self.session.get_inputs()}
        # Triton output name -> graph output name, e.g. LABEL -> label.
        self.outputs = json.loads(parameters["output_map"])

    def execute(self, requests):
        """Tokenize every valid request, run them as one batch, answer each request."""
        responses, texts_per_request = [None] * len(requests), []
        for index, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            try:
                check_request_size(raw, self.max_request_bytes)
                texts_per_request.append((index, decode_texts(raw, self.max_length)))
            except InvalidText as error:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
        if texts_per_request:
            self._run(requests, texts_per_request, responses)
        return responses

    def _run(self, requests, texts_per_request, responses):
        # Compute and send only the outputs some request asked for: a client that wants
        # LABEL and SCORE does not pay for 157 probabilities crossing two processes.
        wanted = [set(requests[index].requested_output_names()) or set(self.outputs)
                  for index, _ in texts_per_request]
        names = [name for name in self.outputs if any(name in w for w in wanted)]
        texts = [text for _, request_texts in texts_per_request for text in request_texts]
        feeds = encode(self.tokenizer, texts, self.with_token_type_ids)
        values = dict(zip(names, run_batch(self.session, feeds, [self.outputs[n] for n in names], self.row_by_row)))
        start = 0
        for (index, request_texts), names_wanted in zip(texts_per_request, wanted):
            end = start + len(request_texts)
            responses[index] = pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, values[name][start:end]) for name in names if name in names_wanted])
            start = end
