"""Repeated grouped CV for the experiments (ablation, tuning): the same comparison over several fold seeds.

Why: one split of a few thousand rows moves OOF log loss by about as much as a feature group does, so a
comparison repeats the grouped CV over fold seeds (folds remade the way the run makes them, over all sources
when there are several, ``pipelines.data.source_folds``) and reports paired deltas: variant and base on the
same rows with the same fit seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.data.folds import make_folds
from pipelines.data.source_folds import make_source_folds

SEED_STRIDE = 100  # fold seed i fits with seed + 100 i: cross_fit already uses seed + fold for fold k


def fit_seed(seed: int, fold_seed: int) -> int:
    """The stacker seed of repetition ``fold_seed`` (0 is the run's own seed)."""
    return seed + SEED_STRIDE * fold_seed


def repeated_folds(battles: pd.DataFrame, folds: np.ndarray, n_seeds: int, seed: int) -> list[np.ndarray]:
    """``n_seeds`` fold assignments: the run's own ``folds`` first, then folds remade with seeds
    ``seed + 1, ...`` the same way (over all sources when ``battles`` has several)."""
    if n_seeds < 1:
        raise ValueError(f"fold seeds must be >= 1, got {n_seeds}")
    folds = np.asarray(folds)
    n_folds = len(np.unique(folds))
    out = [folds]
    for i in range(1, n_seeds):
        if "source" in battles and battles["source"].nunique() > 1:
            out.append(make_source_folds(battles, n_folds, seed + i))
        else:
            out.append(make_folds(battles, n_folds, seed + i)["fold"].to_numpy())
    return out


def paired_seed_deltas(variant: list[list[float]], base: list[list[float]]) -> dict:
    """Variant − base per fold, paired within each seed (same rows, same fit seed); the mean ± std
    over seeds of the per-seed mean deltas (one seed: mean ± std over its folds), and how many of
    the seeds × folds the variant improved (negative delta) or worsened."""
    diffs = [np.asarray(v, dtype=float) - np.asarray(b, dtype=float) for v, b in zip(variant, base)]
    flat = np.concatenate(diffs)
    per_seed = np.array([d.mean() for d in diffs])
    spread = flat if len(diffs) == 1 else per_seed
    return {
        "per_fold": flat.tolist(),
        "per_seed": per_seed.tolist(),
        "mean": float(per_seed.mean()),
        "std": float(spread.std(ddof=1)) if len(spread) > 1 else 0.0,
        "std_over": "folds" if len(diffs) == 1 else "seeds",
        "folds_improved": int((flat < 0).sum()),
        "folds_worse": int((flat > 0).sum()),
        "n_folds": int(len(flat)),
        "seeds": len(diffs),
    }
