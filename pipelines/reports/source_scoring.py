"""Scores of predictions on rows of several sources: what a tie-less source can judge, vote shares.

Why: a source without ties cannot score P(tie), only A vs B (``pairwise_loss``); a pair with
several votes has a vote share, and its entropy is a floor no model can beat. The leave-one-
source-out study and ``oof_per_source`` in a run's report read the same numbers from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arena_schema import N_CLASSES, TIE, swap_proba
from pipelines.data.source_folds import pair_keys, pair_orientation
from pipelines.reports.metrics import summarize

EPS = 1e-15


def pairwise_loss(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Log loss of P(A) / (P(A) + P(B)) on decided rows: what a tie-less source can judge."""
    decided = y != TIE
    if not decided.any():
        return None
    p = np.clip(proba[decided, y[decided]] / proba[decided, :2].sum(axis=1), EPS, 1)
    return float(-np.log(p).mean())


def vote_share_loss(battles: pd.DataFrame, y: np.ndarray, proba: np.ndarray) -> dict | None:
    """Cross-entropy against the vote shares of pairs with several votes (and the shares' own
    entropy, the floor); votes on B|A are turned round to A|B first."""
    keys = pair_keys(battles)
    flip = ~pair_orientation(battles)
    onehot = np.eye(N_CLASSES)[y]
    onehot[flip] = swap_proba(onehot[flip])
    pred = proba.copy()
    pred[flip] = swap_proba(pred[flip])
    frame = pd.DataFrame(np.hstack([onehot, pred]), columns=["qa", "qb", "qt", "pa", "pb", "pt"])
    frame["key"] = keys
    size = frame.groupby("key").size()
    multi = size[size >= 2].index
    if len(multi) == 0:
        return None
    mean = frame[frame["key"].isin(multi)].groupby("key").mean()
    q, p = mean[["qa", "qb", "qt"]].to_numpy(), np.clip(mean[["pa", "pb", "pt"]].to_numpy(), EPS, 1)
    cross = float(-(q * np.log(p)).sum(axis=1).mean())
    entropy = float(-(q * np.log(np.clip(q, EPS, 1))).sum(axis=1).mean())
    return {"pairs": int(len(multi)), "cross_entropy": cross, "entropy": entropy, "kl": cross - entropy}


def score_rows(battles: pd.DataFrame, y: np.ndarray, proba: np.ndarray) -> dict:
    """Log loss, per-class loss, accuracy, pairwise loss, tie rate vs mean P(tie), vote-share loss."""
    base = summarize(y, proba, np.zeros(len(y), dtype=int))
    return {
        "rows": int(len(y)),
        "log_loss": base["log_loss"],
        "per_class": base["per_class"],
        "accuracy": base["accuracy"],
        "pairwise": pairwise_loss(y, proba),
        "mean_p_tie": float(proba[:, TIE].mean()),
        "tie_rate": float((y == TIE).mean()),
        "votes": vote_share_loss(battles, y, proba),
    }


def oof_per_source(battles: pd.DataFrame, oof: np.ndarray) -> dict[str, dict]:
    """:func:`score_rows` of the OOF rows of each source (``battles["source"]``), in order of appearance."""
    y = battles["label"].to_numpy()
    out = {}
    for source in battles["source"].drop_duplicates():
        rows = (battles["source"] == source).to_numpy()
        out[str(source)] = score_rows(battles[rows], y[rows], oof[rows])
    return out
