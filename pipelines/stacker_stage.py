"""One stacker fit of a run (cross-fit + calibration over the run's inputs) and its files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pipelines.config import RunConfig
from pipelines.stacker_inputs import StackerInputs
from pipelines.submission import save_predictions, write_submission
from stacking.cross_fit import fit_calibrated
from stacking.metrics import multiclass_log_loss
from stacking.model import StackerModel

log = logging.getLogger("arena_pref")


@dataclass
class StackerFit:
    """One fitted stacker: uncalibrated and calibrated OOF, calibrated test probabilities, the model."""

    oof_raw: np.ndarray
    oof_cal: np.ndarray
    test: np.ndarray
    model: StackerModel
    sources: list[str]
    fold_transformers: list[list[Any]] = field(default_factory=list)  # per fold, fitted on its training rows

    def log_loss(self, y: np.ndarray) -> float:
        return multiclass_log_loss(y, self.oof_cal)

    @property
    def description(self) -> str:
        return "features + " + ", ".join(self.sources) if self.sources else "features only"


def fit_stacker(inputs: StackerInputs, config: RunConfig, sources: list[str]) -> StackerFit:
    """Cross-fitted stacker followed by nested calibration, over every column of ``inputs``."""
    bar = tqdm(total=len(np.unique(inputs.folds)), desc="stacker folds", disable=not config.progress)
    fit = fit_calibrated(
        inputs.X,
        inputs.y,
        inputs.folds,
        config.stacker,
        config.seed,
        groups=inputs.groups,
        X_test=inputs.X_test,
        progress=bar,
    )
    bar.close()
    model = StackerModel.from_fold_models(
        fit.raw.models,
        fit.calibrator,
        feature_config={"groups": list(config.features.groups), "sources": list(sources)},
        metadata={"best_iterations": fit.raw.best_iterations, "seed": config.seed},
    )
    test = fit.test_cal
    assert test is not None  # X_test was given
    return StackerFit(fit.raw.oof, fit.oof_cal, test, model, list(sources), fit.raw.fold_transformers)


def write_outputs(fit: StackerFit, inputs: StackerInputs, out: Path, submission_path: Path) -> None:
    """Submission (validated), model directory and OOF predictions of one fitted stacker."""
    write_submission(inputs.test["id"], fit.test, submission_path)
    fit.model.save(out / "model")
    save_predictions(
        inputs.train["id"], fit.oof_cal, out / "oof_stacker.csv", {"fold": inputs.folds, "label": inputs.y}
    )
    log.info("wrote %s (stacker over %s)", submission_path, fit.description)
