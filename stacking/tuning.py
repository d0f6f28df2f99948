"""Hyper-parameter search for the stacker: the search space and the fold-by-fold objective.

Everything here takes plain data (a feature frame, labels, saved folds), so the CLI in
``pipelines.tune`` only wires Optuna's storage, plots and reports around it.

The objective is the calibrated, nested out-of-fold log loss that ``pipelines.full_run``
reports, computed by the same :func:`stacking.cross_fit.fit_calibrated`; a per-fold hook
reports the running loss so that a bad trial can be stopped early.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from stacking.calibration import cross_calibrate
from stacking.config import CALIBRATIONS, Calibration, StackerConfig
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


def searched_config(base: StackerConfig, params: dict, calibration: Calibration | str) -> StackerConfig:
    """The fixed settings of ``base`` with searched LightGBM values (which win) and calibration."""
    return replace(base, params={**base.params, **params}, calibration=calibration)  # type: ignore[arg-type]  # checked in __post_init__


@dataclass
class FoldResult:
    """What one trial produced: calibrated OOF loss overall and per fold, and the raw OOF loss."""

    log_loss: float
    log_loss_uncalibrated: float
    per_fold: list[float]
    best_iterations: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "log_loss": self.log_loss,
            "log_loss_uncalibrated": self.log_loss_uncalibrated,
            "per_fold": self.per_fold,
            "best_iterations": self.best_iterations,
        }


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
) -> FoldResult:
    """Calibrated nested OOF log loss of one stacker config; ``report(running_loss, step)`` after
    each fold may raise (e.g. ``optuna.TrialPruned``) to stop a hopeless trial."""
    y, folds = np.asarray(y), np.asarray(folds)

    def on_fold(_fold: int, oof: np.ndarray, done: list[int]) -> None:
        if report is not None:
            report(running_loss(oof, y, folds, done, config.calibration), len(done) - 1)

    fit = fit_calibrated(X, y, folds, config, seed, groups=groups, on_fold=on_fold)
    per_fold = [multiclass_log_loss(y[folds == k], fit.oof_cal[folds == k]) for k in sorted(np.unique(folds))]
    return FoldResult(
        multiclass_log_loss(y, fit.oof_cal), multiclass_log_loss(y, fit.raw.oof), per_fold, fit.raw.best_iterations
    )
