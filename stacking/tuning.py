"""Hyper-parameter search for the stacker: the search space and the fold-by-fold objective.

Everything here takes plain data (a feature frame, labels, saved folds), so the CLI in
``pipelines.tune`` only wires Optuna's storage, plots and reports around it.

The objective is the calibrated, nested out-of-fold log loss that ``pipelines.full_run``
reports, computed by the same :func:`stacking.cross_fit.fit_calibrated`; a per-fold hook
reports the running loss so that a bad trial can be stopped early. With several fold seeds
(repeated grouped CV) the objective is the mean over the seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from stacking.calibration import cross_calibrate
from stacking.config import CALIBRATIONS, CalibrationKind, StackerConfig
from stacking.cross_fit import fit_calibrated
from stacking.metrics import multiclass_log_loss

log = logging.getLogger(__name__)

MAX_DEPTHS = (-1, 3, 4, 5, 6, 8, 10)


def suggest_stacker(trial) -> tuple[dict, str]:
    """LightGBM overrides and a calibration kind for one Optuna trial.

    Ranges bracket ``stacking.lgbm.DEFAULT_PARAMS``, so the defaults are a point of the space.
    """
    params = {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 96, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-8, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-8, 30.0, log=True),
        "max_depth": trial.suggest_categorical("max_depth", MAX_DEPTHS),
        "min_gain_to_split": trial.suggest_float("min_gain_to_split", 0.0, 1.0),
        "extra_trees": trial.suggest_categorical("extra_trees", (False, True)),
    }
    calibration = trial.suggest_categorical("calibration", CALIBRATIONS)
    return params, calibration


def split_trial_params(trial_params: dict) -> tuple[dict, str]:
    """A finished trial's ``params`` back into (LightGBM overrides, calibration kind)."""
    params = dict(trial_params)
    calibration = params.pop("calibration", StackerConfig().calibration)
    return params, calibration


def searched_config(base: StackerConfig, params: dict, calibration: CalibrationKind | str) -> StackerConfig:
    """The fixed settings of ``base`` with searched LightGBM values (which win) and calibration."""
    return replace(base, params={**base.params, **params}, calibration=calibration)  # type: ignore[arg-type]  # checked in __post_init__


@dataclass
class FoldResult:
    """What one trial produced: calibrated OOF loss overall and per fold, and the raw OOF loss."""

    log_loss: float
    log_loss_uncalibrated: float
    per_fold: list[float]  # fold after fold, seed after seed
    best_iterations: list[int] = field(default_factory=list)
    seed_log_loss: list[float] = field(default_factory=list)  # with several fold seeds: each seed's loss

    def as_dict(self) -> dict:
        out = {
            "log_loss": self.log_loss,
            "log_loss_uncalibrated": self.log_loss_uncalibrated,
            "per_fold": self.per_fold,
            "best_iterations": self.best_iterations,
        }
        return {**out, "seed_log_loss": self.seed_log_loss} if self.seed_log_loss else out


def running_loss(oof: np.ndarray, y: np.ndarray, folds: np.ndarray, done: list[int], calibration: str) -> float:
    """Calibrated nested log loss over the folds finished so far (raw loss while only one is done:
    a nested calibrator needs another finished fold to be fitted on)."""
    mask = np.isin(folds, done)
    if len(done) < 2:
        return multiclass_log_loss(y[mask], oof[mask])
    calibrated, _ = cross_calibrate(oof[mask], y[mask], folds[mask], calibration)
    return multiclass_log_loss(y[mask], calibrated)


def evaluate_stacker(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray | None,
    config: StackerConfig,
    seed: int,
    report: Callable[[float, int], None] | None = None,
    **fit_kwargs: Any,
) -> FoldResult:
    """Calibrated nested OOF log loss of one stacker config; ``report(running_loss, step)`` after
    each fold may raise (e.g. ``optuna.TrialPruned``) to stop a hopeless trial. ``fit_kwargs``
    (``sample_weight``, ``tieless``, ``scored``, ``source``) go to :func:`fit_calibrated`; losses
    are over the ``scored`` rows."""
    y, folds = np.asarray(y), np.asarray(folds)
    scored = fit_kwargs.get("scored")
    mask = np.ones(len(y), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)

    def on_fold(_fold: int, oof: np.ndarray, done: list[int]) -> None:
        if report is not None:
            report(running_loss(oof[mask], y[mask], folds[mask], done, config.calibration), len(done) - 1)

    fit = fit_calibrated(X, y, folds, config, seed, groups=groups, on_fold=on_fold, **fit_kwargs)
    ys, fs, cal = y[mask], folds[mask], fit.oof_cal[mask]
    per_fold = [multiclass_log_loss(ys[fs == k], cal[fs == k]) for k in sorted(np.unique(fs))]
    return FoldResult(
        multiclass_log_loss(ys, cal), multiclass_log_loss(ys, fit.raw.oof[mask]), per_fold, fit.raw.best_iterations
    )


def evaluate_repeated(
    X: pd.DataFrame,
    y: np.ndarray,
    fold_sets: Sequence[np.ndarray],
    groups: np.ndarray | None,
    config: StackerConfig,
    seeds: Sequence[int],
    report: Callable[[float, int], None] | None = None,
    **fit_kwargs: Any,
) -> FoldResult:
    """:func:`evaluate_stacker` over repeated grouped CV: the loss is the mean over fold seeds (one
    split alone moves it as much as a parameter does). ``report`` sees the mean of the seeds done and
    the running loss of the current one, at step ``seed index x folds + fold``."""
    results: list[FoldResult] = []
    for i, (folds, seed) in enumerate(zip(fold_sets, seeds)):
        n_folds = len(np.unique(folds))

        def seed_report(value: float, step: int, i: int = i, n_folds: int = n_folds) -> None:
            if report is not None:
                report(float(np.mean([r.log_loss for r in results] + [value])), i * n_folds + step)

        results.append(evaluate_stacker(X, y, folds, groups, config, seed, seed_report, **fit_kwargs))
    if len(results) == 1:
        return results[0]
    return FoldResult(
        float(np.mean([r.log_loss for r in results])),
        float(np.mean([r.log_loss_uncalibrated for r in results])),
        [v for r in results for v in r.per_fold],
        [b for r in results for b in r.best_iterations],
        seed_log_loss=[r.log_loss for r in results],
    )
