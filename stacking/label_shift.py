"""Test-time label-shift re-weighting: new class priors estimated from the unlabelled rows themselves.

Why: a new source's tie rate is its own (human sets call ties 0-33% of the time). When p(x | y) is
the same and only p(y) moved, the posterior is p(y | x) * w_y up to normalisation, with
w_y = new prior / training prior. Two estimators of w, each from the batch being scored:

- ``em``: Saerens, Latinne & Decaestecker (2002): alternate re-weighting the posteriors and
  re-estimating the prior as their mean. Needs calibrated posteriors.
- ``bbse``: black-box shift estimation (Lipton, Wang & Smola 2018), soft version: solve
  C w = mu, with C[i, j] = mean of p_i(x) 1[y = j] over labelled held-out rows (the joint of
  prediction and label) and mu = mean of p(x) over the batch. Works with a biased predictor.

Both are transductive (the batch is the data): a batch of a few rows says little, so the weights
are shrunk to 1 for small batches (``min_rows``).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12
MIN_ROWS = 200  # fewer unlabelled rows than this: no re-weighting (the prior estimate is noise)
WEIGHT_BOUNDS = (0.2, 5.0)  # a weight outside these is an estimate gone wrong, not a shift


def reweight(proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Posteriors times per-class weights, renormalised."""
    out = np.asarray(proba, dtype=np.float64) * np.asarray(weights, dtype=np.float64)[None, :]
    return out / out.sum(axis=1, keepdims=True)


def em_weights(proba: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Saerens et al. EM: class weights (new prior / ``train_prior``) for the batch ``proba``."""
    proba = np.asarray(proba, dtype=np.float64)
    train_prior = np.asarray(train_prior, dtype=np.float64)
    prior = train_prior.copy()
    for _ in range(max_iter):
        adjusted = reweight(proba, prior / train_prior)
        new = adjusted.mean(axis=0)
        if np.abs(new - prior).max() < tol:
            prior = new
            break
        prior = new
    return np.clip(prior / train_prior, *WEIGHT_BOUNDS)


def joint_confusion(proba: np.ndarray, y: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """C[i, j] = mean over rows of p_i(x) * 1[y = j]: soft prediction i jointly with label j."""
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.eye(n_classes)[np.asarray(y, dtype=int)]
    return proba.T @ onehot / len(proba)


def bbse_weights(proba: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Soft BBSE: w solving ``confusion @ w = mean(proba)`` (least squares), clipped to plausible weights."""
    mu = np.asarray(proba, dtype=np.float64).mean(axis=0)
    w, *_ = np.linalg.lstsq(np.asarray(confusion, dtype=np.float64), mu, rcond=None)
    return np.clip(w, *WEIGHT_BOUNDS)


def label_shift_weights(
    method: str,
    proba: np.ndarray,
    train_prior: np.ndarray,
    confusion: np.ndarray | None = None,
    min_rows: int = MIN_ROWS,
) -> np.ndarray:
    """Class weights for ``method`` in ("none", "em", "bbse"); ones when the batch is under ``min_rows``."""
    n_classes = np.asarray(proba).shape[1]
    if method == "none" or len(proba) < min_rows:
        return np.ones(n_classes)
    if method == "em":
        return em_weights(proba, train_prior)
    if method == "bbse":
        if confusion is None:
            raise ValueError("label shift 'bbse' needs the held-out joint confusion matrix")
        return bbse_weights(proba, confusion)
    raise ValueError(f"label shift must be 'none', 'em' or 'bbse', got {method!r}")
