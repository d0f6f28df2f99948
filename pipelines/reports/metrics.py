"""Log-loss summaries of out-of-fold predictions: overall, per fold, per class, and the prior."""

from __future__ import annotations

from typing import Any

import numpy as np

from arena_schema import CLASS_NAMES, N_CLASSES
from stacking.metrics import multiclass_log_loss

LABELS = list(range(N_CLASSES))


def nested_prior(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Class-prior predictions per row, each from the class frequencies of the other folds."""
    y, folds = np.asarray(y), np.asarray(folds)
    out = np.empty((len(y), N_CLASSES))
    for k in np.unique(folds):
        held = folds == k
        counts = np.bincount(y[~held], minlength=N_CLASSES) + 1.0  # add-one: a class absent from training folds
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


def reliability(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict:
    """Per class: equal-width bins of predicted probability with observed frequency (empty bins kept,
    their means None), and the ECE."""
    out = {}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for c, name in enumerate(CLASS_NAMES):
        p, hit = proba[:, c], (y == c).astype(float)
        index = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        bins: list[dict[str, Any]] = []
        for b in range(n_bins):
            mask = index == b
            n = int(mask.sum())
            bins.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": n,
                    "mean_predicted": float(p[mask].mean()) if n else None,
                    "observed": float(hit[mask].mean()) if n else None,
                }
            )
        ece = sum(b["n"] * abs(b["observed"] - b["mean_predicted"]) for b in bins if b["n"]) / len(y)
        out[name] = {"bins": bins, "ece": float(ece)}
    return out
