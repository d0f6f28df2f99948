"""The one way a stacker is cross-fitted and calibrated (full_run, ablation and tuning all use it).

Each fold's stacker is fitted on the other folds and predicts its own fold (out-of-fold; test rows are scored
later by the saved fold models, never here); then :func:`stacking.calibration.cross_calibrate` calibrates the
OOF probabilities nested across folds. With several training sources, ``tieless`` marks rows of sources without
ties (``config.tie_handling`` decides how they train, :mod:`stacking.tie_handling`) and ``scored`` marks the
primary rows: calibration is fitted on those only, because the extras' label mix (tie rate) is not the one the
model is judged on. Per-fold feature transformers (``fold_features``) are fitted on the fold's training battles
only, so their columns never leak the held-out rows; a ``fold_cache`` (:mod:`stacking.fold_feature_cache`) lets
many fits on the same folds share those fits and columns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.base import clone

from arena_schema import N_CLASSES
from stacking.calibration import ProbabilityCalibrator, cross_calibrate
from stacking.config import StackerConfig
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.lgbm import LGBMStacker
from stacking.tie_handling import TieAwareStacker, resolve_tie_handling, tie_handling

log = logging.getLogger(__name__)


class FoldFeature(Protocol):
    """Battles in, A/B-convention feature columns out; fitted on one fold's training battles."""

    def fit(self, battles: pd.DataFrame) -> Any: ...

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame: ...


@dataclass
class CrossFitResult:
    """Out-of-fold probabilities for train, the fold models and each fold's fitted feature transformers (in
    ``fold_ids`` order)."""

    oof: np.ndarray
    models: list[Any]  # LGBMStacker, or TieAwareStacker when sources without ties train (same interface)
    fold_ids: list[int]
    fold_transformers: list[list[Any]] = field(default_factory=list)
    tie_handling: str = "plain"  # what config.tie_handling resolved to

    @property
    def best_iterations(self) -> list[int]:
        return [m.best_iteration_ for m in self.models]


@dataclass
class CalibratedFit:
    """A cross-fit and its nested calibration: ``oof_cal`` never saw the rows it scores.

    ``scored`` (bool per row) marks the rows the calibrator was fitted on and OOF is scored over;
    the other rows' ``oof_cal`` comes from the calibrator fitted on all scored rows.
    """

    raw: CrossFitResult
    oof_cal: np.ndarray
    calibrator: ProbabilityCalibrator
    scored: np.ndarray
    calibration_s: float = 0.0  # wall seconds of the nested calibration (the rest of the fit is the cross-fit)


FoldHook = Callable[[int, np.ndarray, list[int]], None]  # (fold, OOF so far, folds done) after each fold


def with_fold_features(
    X: pd.DataFrame,
    battles: pd.DataFrame | None,
    transformers: list[Any],
    index: np.ndarray | None = None,
    cache: FoldFeatureCache | None = None,
) -> pd.DataFrame:
    """``X`` with the fitted ``transformers``' columns of ``battles`` (rows ``index``) joined on; a ``cache``
    over these battles hands back columns it computed before."""
    if not transformers:
        return X
    if battles is None:
        raise ValueError("fold_features need the battles (battles=)")
    if cache is not None and index is not None and cache.battles is battles:
        extra = [cache.transform(t, index) for t in transformers]
    else:
        rows = battles if index is None else battles.iloc[index]
        extra = [t.transform(rows) for t in transformers]
    return pd.concat([X, *(e.set_axis(X.index, axis=0) for e in extra)], axis=1)


def fit_rows(
    X: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    option: str,
    names: np.ndarray,
    has_ties: np.ndarray,
    groups: np.ndarray | None,
    weights: np.ndarray | None,
    config: StackerConfig | None,
    seed: int,
    overrides: dict[str, Any],
    fold_features: Sequence[FoldFeature] = (),
    battles: pd.DataFrame | None = None,
    fold_cache: FoldFeatureCache | None = None,
) -> tuple[LGBMStacker | TieAwareStacker, list[Any]]:
    """One stacker (and its fitted per-fold features) on the rows ``train_idx``: the unit of
    :func:`cross_fit` and of the leave-one-source-out fits (``stacking.source_holdout``)."""
    if battles is None:
        fitted: list[Any] = []
    elif fold_cache is not None:
        fitted = [fold_cache.fit(t, train_idx) for t in fold_features]
    else:
        fitted = [clone(t).fit(battles.iloc[train_idx]) for t in fold_features]
    X_train = with_fold_features(X.iloc[train_idx], battles, fitted, train_idx, fold_cache)
    fold_groups = None if groups is None else np.asarray(groups)[train_idx]
    fold_weights = None if weights is None else weights[train_idx]
    model = tie_handling(option).fit_fold(
        X_train, y[train_idx], names[train_idx], has_ties[train_idx], fold_weights, fold_groups, seed, config, overrides
    )
    return model, fitted


def tie_inputs(
    y: np.ndarray, config: StackerConfig | None, tieless: np.ndarray | None, source: np.ndarray | None
) -> tuple[str, np.ndarray, np.ndarray]:
    """The resolved tie handling, whether each row's source has ties, and each row's source name."""
    option = resolve_tie_handling((config or StackerConfig()).tie_handling, tieless)
    if tie_handling(option).needs_source and source is None:
        raise ValueError(f"tie_handling {option!r} needs each row's source (source=)")
    has_ties = np.ones(len(y), dtype=bool) if tieless is None else ~np.asarray(tieless, dtype=bool)
    names = np.where(has_ties, "with_ties", "tieless") if source is None else np.asarray(source).astype(str)
    return option, has_ties, names


def cross_fit(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray | None = None,
    config: StackerConfig | None = None,
    seed: int = 0,
    *,
    sample_weight: np.ndarray | None = None,
    tieless: np.ndarray | None = None,
    source: np.ndarray | None = None,
    fold_features: Sequence[FoldFeature] = (),
    battles: pd.DataFrame | None = None,
    fold_cache: FoldFeatureCache | None = None,
    on_fold: FoldHook | None = None,
    progress: Any = None,
    **overrides: Any,
) -> CrossFitResult:
    """Fit one stacker per fold on the other folds; predict its fold (OOF).

    ``overrides`` (``params=``, ``num_boost_round=``, ...) replace fields of ``config``.
    ``on_fold`` may raise (e.g. ``optuna.TrialPruned``) to stop early. ``tieless`` (bool per row:
    its source has no ties) and ``source`` (name per row; ``tie_offset`` needs it) feed the tie
    handling that ``config.tie_handling`` resolves to; without them every fold is a plain stacker.
    ``fold_cache`` (over ``battles``) fits each fold feature once per fold across the fits sharing it.
    """
    if fold_features and battles is None:
        raise ValueError("fold_features need the training battles (battles=)")
    if fold_cache is not None and fold_cache.battles is not battles:
        raise ValueError("fold_cache holds fits over other battles than battles=: build it over these")
    y, folds = np.asarray(y), np.asarray(folds)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    option, has_ties, names = tie_inputs(y, config, tieless, source)
    oof = np.full((len(y), N_CLASSES), np.nan)
    result = CrossFitResult(oof, [], [], tie_handling=option)
    for k in sorted(np.unique(folds)):
        train_idx, held_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        model, fitted = fit_rows(
            X,
            y,
            train_idx,
            option,
            names,
            has_ties,
            groups,
            weights,
            config,
            seed + int(k),
            overrides,
            fold_features,
            battles,
            fold_cache,
        )
        held = with_fold_features(X.iloc[held_idx], battles, fitted, held_idx, fold_cache)
        oof[held_idx] = model.predict_proba(held)
        result.models.append(model)
        result.fold_ids.append(int(k))
        result.fold_transformers.append(fitted)
        log.info("stacker fold %d: best iteration %d", k, model.best_iteration_)
        if progress is not None:
            progress.update(1)
        if on_fold is not None:
            on_fold(int(k), oof, list(result.fold_ids))
    return result


def fit_calibrated(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    config: StackerConfig,
    seed: int,
    *,
    scored: np.ndarray | None = None,
    **kwargs: Any,
) -> CalibratedFit:
    """:func:`cross_fit`, then nested calibration of its OOF probabilities (``config.calibration``),
    fitted on the ``scored`` rows only (default: all rows)."""
    raw = cross_fit(X, y, folds, config=config, seed=seed, **kwargs)
    started = time.perf_counter()
    y, folds = np.asarray(y), np.asarray(folds)
    if scored is None:
        oof_cal, calibrator = cross_calibrate(raw.oof, y, folds, config.calibration)
        return CalibratedFit(raw, oof_cal, calibrator, np.ones(len(y), dtype=bool), time.perf_counter() - started)
    scored = np.asarray(scored, dtype=bool)
    if len(scored) != len(y) or not scored.any():
        raise ValueError("scored must be a bool per row with at least one True")
    oof_cal = np.empty_like(raw.oof)
    oof_cal[scored], calibrator = cross_calibrate(raw.oof[scored], y[scored], folds[scored], config.calibration)
    oof_cal[~scored] = calibrator.predict_proba(raw.oof[~scored])  # fitted on other rows only: still honest
    return CalibratedFit(raw, oof_cal, calibrator, scored, time.perf_counter() - started)
