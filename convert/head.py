"""A scikit-learn LogisticRegression folded into the graph as a linear layer + softmax."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConvertError


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray        # (num_classes, hidden) float32
    bias: np.ndarray          # (num_classes,) float32
    class_names: list[str]    # the estimator's classes_, as strings


def load_sklearn_head(path: Path, hidden_size: int) -> LinearHead:
    """The logits layer whose softmax equals the estimator's predict_proba.

    Multinomial logistic regression is softmax(x W^T + b). A binary one is
    sigmoid(z) with z = x w + b, which equals softmax([-z/2, z/2]); one-vs-rest
    normalises sigmoids instead and cannot be folded into a softmax, so it is refused.
    """
    import joblib
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickles from an older scikit-learn load with a version warning
        estimator = joblib.load(path)
    if not isinstance(estimator, LogisticRegression):
        raise ConvertError(f"{path} holds a {type(estimator).__name__}; "
                           "only a scikit-learn LogisticRegression can be folded in")
    if getattr(estimator, "multi_class", "auto") == "ovr" and len(estimator.classes_) > 2:
        raise ConvertError(f"{path} is a one-vs-rest LogisticRegression; refit it with the multinomial loss")
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    if coef.shape[1] != hidden_size:
        raise ConvertError(f"head {path} expects {coef.shape[1]} input features but the encoder's pooled "
                           f"embedding has {hidden_size}; the head was trained on another encoder")
    if coef.shape[0] == 1:  # binary
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    return LinearHead(weight=coef.astype(np.float32), bias=intercept.astype(np.float32),
                      class_names=[str(c) for c in estimator.classes_])
