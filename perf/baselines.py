"""The runtimes Triton is compared with, measured on the same texts with the same statistics.

- OrtPipeline: tokenization + onnxruntime session.run on the repository's own model.onnx,
  in-process: the floor no server can beat.
- TorchPipeline: what a user deploys without us: transformers tokenizer + model forward
  in PyTorch, mean pooling, L2 normalisation, and for the intent model the scikit-learn
  LogisticRegression's predict_proba (as rag_intent_classifier's infer.py does).
- FastAPI (perf/fastapi_app.py) around an OrtPipeline, driven by http_load() over loopback.

Latency statistics use the nearest-rank percentile, as perf_analyzer does.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .inputs import load_tokenizer
from .peers.measure import batches_of as batches_of  # re-exported: the sweep, arch and gap use it from here
from .peers.measure import nearest_rank_ms, timed_callers

MAX_LENGTH = 512  # truncation limit of the baselines' tokenizers; benchmark texts stay below


def latency_summary(latencies_s: Sequence[float], elapsed_s: float, batch_size: int) -> dict[str, float]:
    """p50/p90/p95/p99/avg in ms and throughput in inferences (texts) per second."""
    if not latencies_s:
        raise ValueError("no request completed during the measurement window; lengthen baseline_seconds")
    ordered = sorted(latencies_s)
    return {
        "throughput": len(ordered) * batch_size / elapsed_s,
        **{f"p{percent}_ms": nearest_rank_ms(ordered, percent) for percent in (50, 90, 95, 99)},
        "avg_ms": sum(ordered) / len(ordered) * 1000,
        "requests": len(ordered),
    }


def measure_inprocess(call: Callable[[list[str]], Any], batches: list[list[str]],
                      seconds: float, warmup_requests: int) -> dict[str, float]:
    """Call `call` on the batches in turn, one at a time, for `seconds` after a warm-up."""
    for index in range(warmup_requests):
        call(batches[index % len(batches)])
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    index = 0
    while time.perf_counter() < deadline:
        before = time.perf_counter()
        call(batches[index % len(batches)])
        latencies.append(time.perf_counter() - before)
        index += 1
    return latency_summary(latencies, time.perf_counter() - started, len(batches[0]))


class OrtPipeline:
    """Text in, (labels, scores) or embeddings out: the repository's tokenizer and model.onnx."""

    def __init__(self, onnx_path: Path, tokenizer_json: Path, labels: list[str] | None = None,
                 intra_op_threads: int = 0, spin: bool = True) -> None:
        import onnxruntime

        self.tokenizer = load_tokenizer(tokenizer_json)
        self.tokenizer.enable_padding()  # to the longest text in the batch, as the tokenizer model does
        self.tokenizer.enable_truncation(max_length=MAX_LENGTH)
        self.session = onnxruntime.InferenceSession(str(onnx_path),
                                                    _session_options(onnxruntime, intra_op_threads, spin),
                                                    providers=_ort_providers(onnxruntime))
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]
        self.labels = np.array(labels, dtype=object) if labels else None

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.input_names}
        outputs = dict(zip(self.output_names, self.session.run(None, feed)))
        return self._postprocess(outputs)

    def _postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Label and score for a classifier (what the ensemble returns), else the raw outputs."""
        probabilities = outputs.get("probabilities")
        if probabilities is None and "logits" in outputs:
            logits = outputs["logits"]
            exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probabilities = exp / exp.sum(axis=-1, keepdims=True)
        if probabilities is None or self.labels is None:
            return outputs
        best = probabilities.argmax(axis=-1)
        return {"labels": self.labels[best].tolist(), "scores": probabilities.max(axis=-1).tolist()}


class TorchPipeline:
    """transformers + PyTorch: tokenizer, forward, mean pooling, L2 norm, optional sklearn head."""

    def __init__(self, checkpoint: Path, head_path: Path | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.model = AutoModel.from_pretrained(str(checkpoint)).eval().to(self.device)
        self.head = _load_sklearn_head(head_path) if head_path else None

    def __call__(self, texts: list[str]) -> Any:
        torch = self.torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            embeddings = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        if self.head is None:
            return embeddings
        return self.head.predict_proba(embeddings)


def _load_sklearn_head(head_path: Path) -> Any:
    import warnings

    import joblib

    with warnings.catch_warnings():  # pickled by scikit-learn 1.5; loads fine in newer versions
        warnings.simplefilter("ignore", UserWarning)
        return joblib.load(head_path)


def _session_options(onnxruntime: Any, intra_op_threads: int, spin: bool) -> Any:
    """ONNX Runtime's defaults unless told otherwise: a floor is the fastest in-process setting.

    The defaults (one thread per core, threads that spin between runs) answer soonest when
    nothing else runs. The served encoder may choose otherwise (no spinning, to leave cores
    to the server); the gap to this floor shows what that choice costs.
    """
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads  # 0: ORT picks one per physical core
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def _ort_providers(onnxruntime: Any) -> list[str]:
    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def http_load(url: str, path: str, bodies: list[bytes], concurrency: int,
              seconds: float, warmup_requests: int, batch_size: int) -> dict[str, float]:
    """POST the bodies in turn from `concurrency` keep-alive connections; latency statistics."""
    host, port = url.split(":")
    headers = {"Content-Type": "application/json"}

    def poster(connection: http.client.HTTPConnection) -> Callable[[bytes], None]:
        def post(body: bytes) -> None:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}{path} answered {response.status}: {payload[:300]!r}")
        return post

    warm = http.client.HTTPConnection(host, int(port), timeout=60)
    for index in range(warmup_requests):
        poster(warm)(bodies[index % len(bodies)])
    warm.close()
    connections = [http.client.HTTPConnection(host, int(port), timeout=60) for _ in range(concurrency)]
    try:
        latencies, elapsed = timed_callers([poster(c) for c in connections], bodies, seconds)
    except RuntimeError as error:  # a failed request must fail the run
        raise RuntimeError(f"HTTP load against {url} failed: {error}") from error
    finally:
        for connection in connections:
            connection.close()
    return latency_summary(latencies, elapsed, batch_size)


def fastapi_bodies(batches: list[list[str]]) -> list[bytes]:
    return [json.dumps({"texts": batch}).encode() for batch in batches]
