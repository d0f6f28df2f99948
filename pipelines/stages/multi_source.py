"""Several training sources and repeated grouped CV: the arguments one fit needs, and its folds.

Why: extra sources only train. Folds are made over *all* rows (grouped by prompt and answer pair,
``pipelines.data.source_folds``), so a prompt in the primary's fold k is never trained on through an
extra set; calibration and OOF metrics use the primary rows only (``scored``), the report gives
OOF per source (``pipelines.reports.source_scoring.oof_per_source``). One split of a few thousand rows
moves OOF log loss by about as much as a feature group does, so comparisons (ablation, tuning)
can repeat the grouped CV over several fold seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.folds import make_folds
from pipelines.data.source_folds import make_source_folds
from pipelines.data.training_sets import TrainingSourcesConfig
from pipelines.runtime.errors import UsageError

SEED_STRIDE = 100  # fold seed i fits with seed + 100 i: cross_fit already uses seed + fold for fold k


def source_fit_kwargs(battles: pd.DataFrame) -> dict[str, np.ndarray]:
    """``sample_weight``, ``tieless``, ``scored`` and ``source`` for :func:`stacking.cross_fit.fit_calibrated`
    from a :func:`pipelines.data.training_sets.load_training_sources` frame; ``{}`` for a plain train set,
    so a single-source run keeps today's path exactly."""
    if "source" not in battles or "is_primary" not in battles:
        return {}
    return {
        "sample_weight": battles["weight"].to_numpy(dtype=np.float64),
        "tieless": ~battles["source_has_ties"].to_numpy(dtype=bool),
        "scored": battles["is_primary"].to_numpy(dtype=bool),
        "source": battles["source"].to_numpy().astype(str),
    }


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


def require_extras_loaded(inputs: Any, sources: TrainingSourcesConfig) -> None:
    """Stop when ``--extra-train`` was given but the inputs hold only the primary rows (the
    run's ``load_run_train`` loads extras with ``load_training_sources``): silently
    ignoring a training set would report a model that is not the one asked for."""
    if sources.extra_train and "is_primary" not in inputs.train:
        raise UsageError("--extra-train: these inputs were prepared without the extra training sets")
