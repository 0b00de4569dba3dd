"""Triton Python-backend model: raw text in, token tensors out.

Copied into the repository as `<name>-tokenizer/1/model.py` beside `tokenizer.json`.
It imports only `tokenizers` and numpy, so serving needs no `transformers`. The pure
functions at the top are what the converter's validation and the unit tests use, so the
text -> ids path that is validated is the one that is served.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton: by the converter and the unit tests
    pb_utils = None

# Each text is cut to max_length x this many characters before tokenizing, which bounds
# the work a megabyte of text costs. For text made of words, that prefix holds far more
# than max_length tokens, so the answer is the one for the whole text. It can differ only
# for text whose first 12,800 characters make few tokens (long runs of zero-width or
# unknown characters before the words): such text is answered on its prefix.
MAX_CHARS_PER_TOKEN = 100

# The most text (bytes, summed over the batch) one request may carry. Only max_length *
# MAX_CHARS_PER_TOKEN characters of each text are ever read, so the most useful text a full
# batch can hold is 32 x 12,800 characters x 4 UTF-8 bytes = 1.6 MiB; 16 MiB leaves room
# for a few whole documents and refuses, before any decoding, requests that could only
# cost memory. Triton 2.51 itself puts no limit on the request size (serve/environment.py).
# A config parameter "max_request_bytes" overrides it.
MAX_REQUEST_TEXT_BYTES = 16 * 2**20


class InvalidText(ValueError):
    """A text that cannot be tokenized; the message names the item and why."""


def load_tokenizer(path: str | Path, max_length: int, pad_to_multiple_of: int | None = None) -> Tokenizer:
    """The checkpoint's tokenizer with our truncation and padding, whatever its file says."""
    if not Path(path).is_file():  # the tokenizers library's own error does not name the file
        raise FileNotFoundError(f"tokenizer file {path} is missing; rebuild the repository with python -m convert")
    tokenizer = Tokenizer.from_file(str(path))
    # The file's own pad token if it names one (read before no_padding() forgets it), else
    # BERT's [PAD] or RoBERTa's and XLM-R's <pad> (id 1): the build checks it against the model's.
    pad_token = tokenizer.padding["pad_token"] if tokenizer.padding else "[PAD]"
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        pad_token, pad_id = "<pad>", tokenizer.token_to_id("<pad>") or 0
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_to_multiple_of=pad_to_multiple_of)
    return tokenizer


def check_request_size(raw: np.ndarray, limit: int) -> None:
    """Refuse a request whose texts together hold more than `limit` bytes."""
    total = sum(len(item) for item in raw.reshape(-1))
    if total > limit:
        raise InvalidText(
            f"the request holds {total} bytes of text, over the limit of {limit} bytes ({limit / 2**20:g} MiB) "
            f"per request; send fewer or shorter texts (each is truncated to the model's max_length tokens anyway)")


def decode_texts(raw: np.ndarray, max_length: int) -> list[str]:
    """BYTES tensor items -> str, refusing what no model should see."""
    texts = []
    for index, item in enumerate(raw.reshape(-1)):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidText(f"TEXT[{index}] is not valid UTF-8 (byte {error.start}); send UTF-8 text") from None
        if not item.strip():
            raise InvalidText(f"TEXT[{index}] is empty or whitespace only; send at least one word")
        texts.append(item[: max_length * MAX_CHARS_PER_TOKEN])
    return texts


def encode(tokenizer: Tokenizer, texts: list[str], with_token_type_ids: bool) -> dict[str, np.ndarray]:
    """One batched encode, padded to the longest text in the batch, int64 like the encoder."""
    encodings = tokenizer.encode_batch(texts)
    tensors = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    if with_token_type_ids:
        tensors["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    return tensors


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.max_length = int(parameters["max_length"])
        self.max_request_bytes = int(parameters.get("max_request_bytes", MAX_REQUEST_TEXT_BYTES))
        pad_multiple = int(parameters.get("pad_to_multiple_of", "0")) or None
        self.output_names = [output["name"] for output in config["output"]]
        self.with_token_type_ids = "token_type_ids" in self.output_names
        tokenizer_file = Path(args["model_repository"]) / args["model_version"] / "tokenizer.json"
        self.tokenizer = load_tokenizer(tokenizer_file, self.max_length, pad_multiple)

    def execute(self, requests):
        return [self._execute_one(request) for request in requests]

    def _execute_one(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
        try:
            check_request_size(raw, self.max_request_bytes)
            texts = decode_texts(raw, self.max_length)
        except InvalidText as error:
            # INVALID_ARG: the client sent bad text (HTTP 400), not a server fault (500).
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
        tensors = encode(self.tokenizer, texts, self.with_token_type_ids)
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, tensors[name]) for name in self.output_names])
