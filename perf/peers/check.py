"""Correctness first: a peer's embeddings against sentence-transformers (torch) on the same texts.

Numpy only: imported by the serving venv and by the runner in the peers venv alike. The bar
is the project's embedding gate (convert/mixed_precision.py: min cosine 0.99); an FP32 peer
that pools and normalises as the model card says lands above 0.9999, a CLS-pooling one far below.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

COSINE_MIN = 0.99


def cosine_check(reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]],
                 threshold: float = COSINE_MIN) -> dict[str, Any]:
    """Row-wise cosine of the candidate with the reference: min, mean and whether it passes."""
    expected = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if got.shape != expected.shape:
        return {"ok": False, "error": f"shape {list(got.shape)} where the reference has {list(expected.shape)}"}
    if not np.isfinite(got).all():
        return {"ok": False, "error": "the embeddings hold NaN or infinity"}
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    cosines = (expected * got).sum(axis=1) / np.maximum(norms, 1e-12)
    minimum, mean = float(cosines.min()), float(cosines.mean())
    return {"ok": minimum >= threshold, "cosine_min": round(minimum, 6), "cosine_mean": round(mean, 6),
            "threshold": threshold, "texts": int(len(cosines))}
