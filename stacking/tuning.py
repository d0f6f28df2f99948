"""Hyper-parameter search for the stacker: the search space and the fold-by-fold objective.

Everything here takes plain data (a feature frame, labels, saved folds), so the CLI in
``pipelines.tune`` only wires Optuna's storage, plots and reports around it.

The objective is the calibrated, nested out-of-fold log loss that ``pipelines.full_run``
reports: fold models exactly as :func:`stacking.lgbm.cross_fit` fits them (same seeds), then
:func:`stacking.calibration.cross_calibrate`. It is computed fold by fold only so that a bad
trial can be stopped early; :func:`cross_validated_loss` gives the same number in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stacking.calibration import ProbabilityCalibrator, cross_calibrate
from stacking.lgbm import LGBMStacker, cross_fit
from stacking.metrics import multiclass_log_loss

log = logging.getLogger(__name__)

CALIBRATIONS = ProbabilityCalibrator.KINDS
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
    calibration = params.pop("calibration", "temperature")
    return params, calibration


@dataclass
class StackerFit:
    """The fixed (not searched) settings of every stacker fit: those of ``StackerConfig``, and
    LightGBM settings that are not searched (e.g. ``num_threads``); searched values win."""

    seed: int = 42
    num_boost_round: int = 3000
    early_stopping_rounds: int = 100
    inner_valid_fraction: float = 0.15
    swap_augment: bool = True
    base_params: dict = field(default_factory=dict)

    def params(self, searched: dict) -> dict:
        return {**self.base_params, **searched}

    def stacker_kwargs(self) -> dict:
        return {
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "inner_valid_fraction": self.inner_valid_fraction,
        }


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


def iter_fold_predictions(
    X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, groups: np.ndarray | None, params: dict, fit: StackerFit
) -> Iterator[tuple[int, np.ndarray, np.ndarray, LGBMStacker]]:
    """(fold, held-out mask, held-out probabilities, model) per fold, fitted as ``cross_fit`` does.

    ``cross_fit`` returns only when every fold is done; pruning needs each fold as it finishes.
    """
    y, folds = np.asarray(y), np.asarray(folds)
    for k in sorted(np.unique(folds)):
        train_mask = folds != k
        model = LGBMStacker(
            params=fit.params(params), seed=fit.seed + int(k), swap_augment=fit.swap_augment, **fit.stacker_kwargs()
        )
        model.fit(X[train_mask], y[train_mask], None if groups is None else np.asarray(groups)[train_mask])
        yield int(k), ~train_mask, model.predict_proba(X[~train_mask]), model


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
    params: dict,
    calibration: str,
    fit: StackerFit,
    report: Callable[[float, int], None] | None = None,
) -> FoldResult:
    """Calibrated nested OOF log loss of one parameter set; ``report(running_loss, step)`` after
    each fold may raise (e.g. ``optuna.TrialPruned``) to stop a hopeless trial."""
    y, folds = np.asarray(y), np.asarray(folds)
    oof = np.full((len(y), 3), np.nan)
    done: list[int] = []
    best_iterations: list[int] = []
    for step, (k, held, proba, model) in enumerate(iter_fold_predictions(X, y, folds, groups, params, fit)):
        oof[held] = proba
        done.append(k)
        best_iterations.append(model.best_iteration_)
        if report is not None:
            report(running_loss(oof, y, folds, done, calibration), step)
    return score_oof(oof, y, folds, calibration, best_iterations)


def score_oof(
    oof: np.ndarray, y: np.ndarray, folds: np.ndarray, calibration: str, best_iterations: list[int] | None = None
) -> FoldResult:
    """Nested calibration of complete OOF probabilities, then log loss overall and per fold."""
    calibrated, _ = cross_calibrate(oof, y, folds, calibration)
    per_fold = [multiclass_log_loss(y[folds == k], calibrated[folds == k]) for k in sorted(np.unique(folds))]
    return FoldResult(
        multiclass_log_loss(y, calibrated), multiclass_log_loss(y, oof), per_fold, list(best_iterations or [])
    )


def cross_validated_loss(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray | None,
    params: dict,
    calibration: str,
    fit: StackerFit,
) -> FoldResult:
    """The same number as :func:`evaluate_stacker`, through ``cross_fit`` in one call (no pruning)."""
    result = cross_fit(
        X,
        y,
        folds,
        groups,
        params=fit.params(params),
        seed=fit.seed,
        swap_augment=fit.swap_augment,
        **fit.stacker_kwargs(),
    )
    return score_oof(
        result.oof, np.asarray(y), np.asarray(folds), calibration, [m.best_iteration_ for m in result.models]
    )
