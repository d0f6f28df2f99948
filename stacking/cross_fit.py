"""The one way a stacker is cross-fitted and calibrated (full_run, ablation and tuning all use it).

Each fold's stacker is fitted on the other folds, predicts its own fold (out-of-fold) and the
test rows; then :func:`stacking.calibration.cross_calibrate` calibrates the OOF probabilities
nested across folds. Per-fold feature transformers (``fold_features``) are fitted on the
fold's training battles only, so their columns never leak the held-out rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.base import clone

from stacking.calibration import ProbabilityCalibrator, cross_calibrate
from stacking.config import StackerConfig
from stacking.lgbm import LGBMStacker

log = logging.getLogger(__name__)


class FoldFeature(Protocol):
    """Battles in, A/B-convention feature columns out; fitted on one fold's training battles."""

    def fit(self, battles: pd.DataFrame) -> Any: ...

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame: ...


@dataclass
class CrossFitResult:
    """Out-of-fold probabilities for train, fold-mean probabilities for test, the fold models and
    each fold's fitted feature transformers (in ``fold_ids`` order)."""

    oof: np.ndarray
    test: np.ndarray | None
    models: list[LGBMStacker]
    fold_ids: list[int]
    fold_transformers: list[list[Any]] = field(default_factory=list)

    @property
    def best_iterations(self) -> list[int]:
        return [m.best_iteration_ for m in self.models]


@dataclass
class CalibratedFit:
    """A cross-fit and its nested calibration: ``oof_cal`` never saw the rows it scores."""

    raw: CrossFitResult
    oof_cal: np.ndarray
    calibrator: ProbabilityCalibrator

    @property
    def test_cal(self) -> np.ndarray | None:
        return None if self.raw.test is None else self.calibrator.predict_proba(self.raw.test)


FoldHook = Callable[[int, np.ndarray, list[int]], None]  # (fold, OOF so far, folds done) after each fold


def with_fold_features(
    X: pd.DataFrame, battles: pd.DataFrame | None, transformers: list[Any], index: np.ndarray | None = None
) -> pd.DataFrame:
    if not transformers:
        return X
    if battles is None:
        raise ValueError("fold_features need the battles (battles=, and test_battles= with X_test)")
    rows = battles if index is None else battles.iloc[index]
    extra = [t.transform(rows).set_axis(X.index, axis=0) for t in transformers]
    return pd.concat([X, *extra], axis=1)


def cross_fit(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray | None = None,
    X_test: pd.DataFrame | None = None,
    config: StackerConfig | None = None,
    seed: int = 0,
    *,
    sample_weight: np.ndarray | None = None,
    fold_features: Sequence[FoldFeature] = (),
    battles: pd.DataFrame | None = None,
    test_battles: pd.DataFrame | None = None,
    on_fold: FoldHook | None = None,
    progress: Any = None,
    **overrides: Any,
) -> CrossFitResult:
    """Fit one stacker per fold on the other folds; predict its fold (OOF) and the test rows.

    ``overrides`` (``params=``, ``num_boost_round=``, ...) replace fields of ``config``.
    ``on_fold`` may raise (e.g. ``optuna.TrialPruned``) to stop early.
    """
    if fold_features and battles is None:
        raise ValueError("fold_features need the training battles (battles=)")
    y, folds = np.asarray(y), np.asarray(folds)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    oof = np.full((len(y), 3), np.nan)
    test = np.zeros((len(X_test), 3)) if X_test is not None else None
    result = CrossFitResult(oof, test, [], [])
    for k in sorted(np.unique(folds)):
        train_idx, held_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        fitted = [clone(t).fit(battles.iloc[train_idx]) for t in fold_features] if battles is not None else []
        model = LGBMStacker(seed=seed + int(k), config=config, **overrides)
        model.fit(
            with_fold_features(X.iloc[train_idx], battles, fitted, train_idx),
            y[train_idx],
            None if groups is None else np.asarray(groups)[train_idx],
            sample_weight=None if weights is None else weights[train_idx],
        )
        oof[held_idx] = model.predict_proba(with_fold_features(X.iloc[held_idx], battles, fitted, held_idx))
        if X_test is not None and test is not None:
            test += model.predict_proba(with_fold_features(X_test, test_battles, fitted))
        result.models.append(model)
        result.fold_ids.append(int(k))
        result.fold_transformers.append(fitted)
        log.info("stacker fold %d: best iteration %d", k, model.best_iteration_)
        if progress is not None:
            progress.update(1)
        if on_fold is not None:
            on_fold(int(k), oof, list(result.fold_ids))
    if test is not None:
        test /= len(result.models)
    return result


def fit_calibrated(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    config: StackerConfig,
    seed: int,
    **kwargs: Any,
) -> CalibratedFit:
    """:func:`cross_fit`, then nested calibration of its OOF probabilities (``config.calibration``)."""
    raw = cross_fit(X, y, folds, config=config, seed=seed, **kwargs)
    oof_cal, calibrator = cross_calibrate(raw.oof, np.asarray(y), np.asarray(folds), config.calibration)
    return CalibratedFit(raw, oof_cal, calibrator)
