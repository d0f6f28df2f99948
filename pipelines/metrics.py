"""Log-loss summaries of out-of-fold predictions: overall, per fold, per class, and the prior."""

from __future__ import annotations

import numpy as np

from arena_schema import CLASS_NAMES
from stacking.metrics import multiclass_log_loss

LABELS = [0, 1, 2]


def nested_prior(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Class-prior predictions per row, each from the class frequencies of the other folds."""
    y, folds = np.asarray(y), np.asarray(folds)
    out = np.empty((len(y), 3))
    for k in np.unique(folds):
        held = folds == k
        counts = np.bincount(y[~held], minlength=3) + 1.0  # add-one: a class absent from training folds
        out[held] = counts / counts.sum()
    return out


def summarize(y: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> dict:
    """Overall, per-fold (mean, std) and per-class log loss of OOF probabilities."""
    y, folds = np.asarray(y), np.asarray(folds)
    per_fold = {int(k): multiclass_log_loss(y[folds == k], proba[folds == k]) for k in np.unique(folds)}
    values = np.array(list(per_fold.values()))
    true_p = np.clip(proba[np.arange(len(y)), y], 1e-15, 1)
    per_class = {CLASS_NAMES[c]: float(-np.log(true_p[y == c]).mean()) if (y == c).any() else None for c in LABELS}
    accuracy = float((proba.argmax(axis=1) == y).mean())
    return {
        "log_loss": multiclass_log_loss(y, proba),
        "per_fold": per_fold,
        "fold_mean": float(values.mean()),
        "fold_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "per_class": per_class,
        "accuracy": accuracy,
        "rows": int(len(y)),
    }
