"""The hand-rolled alternative to Triton: FastAPI + uvicorn around one ONNX Runtime session.

Started by the runner as its own process (like a real deployment):
    PERF_ONNX_MODEL=... PERF_TOKENIZER_JSON=... [PERF_LABELS=labels.txt] \
        python -m uvicorn perf.fastapi_app:app --host 127.0.0.1 --port 8080
POST /predict {"texts": [...]} -> {"labels": [...], "scores": [...]} (or the raw outputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from .baselines import OrtPipeline


class PredictRequest(BaseModel):
    texts: list[str]


def _pipeline_from_environment() -> OrtPipeline:
    try:
        onnx_path = Path(os.environ["PERF_ONNX_MODEL"])
        tokenizer_json = Path(os.environ["PERF_TOKENIZER_JSON"])
    except KeyError as missing:
        raise RuntimeError(f"set {missing} to start the FastAPI baseline (see perf/fastapi_app.py)") from None
    labels_file = os.environ.get("PERF_LABELS")
    labels = Path(labels_file).read_text().split("\n") if labels_file else None
    # ONNX Runtime's default session settings: what a hand-rolled service would use.
    return OrtPipeline(onnx_path, tokenizer_json, [label for label in labels or [] if label] or None)


app = FastAPI(title="ORT baseline")
pipeline = _pipeline_from_environment()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    # A plain `def` endpoint: FastAPI runs it in its thread pool, and session.run releases
    # the GIL, so concurrent requests overlap as they would in a real service.
    result = pipeline(request.texts)
    return {name: value.tolist() if isinstance(value, np.ndarray) else value for name, value in result.items()}
