"""Leave-one-source-out predictions: how the stacker does on a source it has never seen.

Why: out-of-fold rows share their source (its annotators, its tie rate, its answer styles) with
the rows that trained them, so a calibrator fitted on them is right for the training data and
overconfident on a new source. Predicting each tie-bearing source with a stacker trained on the
others, minus every row that shares a prompt or answer-pair group with it (overlapping sets
cannot leak), gives the predictions a new-source calibrator is fitted on
(:mod:`stacking.new_source`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stacking.config import StackerConfig
from stacking.cross_fit import FoldFeature, fit_rows, tie_inputs, with_fold_features

log = logging.getLogger(__name__)

MIN_SOURCE_ROWS = 200  # a held-out source smaller than this says little about its own calibration


def eligible_holdouts(source: np.ndarray, has_ties: np.ndarray, min_rows: int = MIN_SOURCE_ROWS) -> list[str]:
    """Sources with ties and at least ``min_rows`` rows, sorted: the ones a calibrator can be judged on."""
    source = np.asarray(source).astype(str)
    has_ties = np.asarray(has_ties, dtype=bool)
    names, counts = np.unique(source, return_counts=True)
    return [str(n) for n, c in zip(names, counts, strict=True) if c >= min_rows and has_ties[source == n].any()]


def source_training_rows(source: np.ndarray, groups: np.ndarray, held_out: Sequence[str]) -> np.ndarray:
    """Rows that may train a model judged on ``held_out``: outside those sources and outside every
    group (prompt or answer pair) any of their rows belongs to."""
    source, groups = np.asarray(source).astype(str), np.asarray(groups)
    out = np.isin(source, list(held_out))
    return ~out & ~np.isin(groups, np.unique(groups[out]))


def held_out_source_proba(
    X: pd.DataFrame,
    y: np.ndarray,
    source: np.ndarray,
    has_ties: np.ndarray,
    groups: np.ndarray,
    holdouts: Sequence[str],
    config: StackerConfig | None = None,
    seed: int = 0,
    *,
    exclude: Sequence[str] = (),
    sample_weight: np.ndarray | None = None,
    fold_features: Sequence[FoldFeature] = (),
    battles: pd.DataFrame | None = None,
    **overrides: Any,
) -> dict[str, np.ndarray]:
    """{source: uncalibrated (n_source, 3) probabilities of its rows} from a stacker trained without it.

    ``exclude``: sources (and their groups) left out of every fit as well, for nested studies
    (a calibrator judged on source h must be fitted on predictions of models that never saw h).
    """
    X = X.reset_index(drop=True)
    y = np.asarray(y)
    source = np.asarray(source).astype(str)
    has_ties = np.asarray(has_ties, dtype=bool)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    option, row_has_ties, names = tie_inputs(y, config, ~has_ties, source)
    out: dict[str, np.ndarray] = {}
    for k, held in enumerate(holdouts):
        train = source_training_rows(source, groups, [held, *exclude])
        if not train.any():
            raise ValueError(f"no training rows left when source {held!r} is held out")
        model, fitted = fit_rows(
            X,
            y,
            np.flatnonzero(train),
            option,
            names,
            row_has_ties,
            groups,
            weights,
            config,
            seed + k,
            overrides,
            fold_features,
            battles,
        )
        rows = np.flatnonzero(source == held)
        out[held] = model.predict_proba(with_fold_features(X.iloc[rows], battles, fitted, rows))
        log.info("source %s held out: %d training rows, best iteration %d", held, train.sum(), model.best_iteration_)
    return out
