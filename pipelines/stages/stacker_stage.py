"""One stacker fit of a run (cross-fit + calibration over the run's inputs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pipelines.reports.source_scoring import oof_per_source
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig
from stacking.cross_fit import FoldFeature, fit_calibrated
from stacking.metrics import multiclass_log_loss
from stacking.model import StackerModel

log = logging.getLogger("arena_pref")


@dataclass
class StackerFit:
    """One fitted stacker: uncalibrated and calibrated OOF, the model. With several training sources, ``scored``
    marks the primary rows (its log loss is theirs alone) and ``per_source`` holds each source's scores of the
    uncalibrated OOF."""

    oof_raw: np.ndarray
    oof_cal: np.ndarray
    model: StackerModel
    sources: list[str]
    fold_transformers: list[list[Any]] = field(default_factory=list)  # per fold, fitted on its training rows
    scored: np.ndarray | None = None  # None: every row
    per_source: dict[str, dict] | None = None
    tie_handling: str = "plain"
    calibration_s: float = 0.0  # of the fit's wall time, the nested calibration's

    def scored_rows(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=bool) if self.scored is None else self.scored

    def log_loss(self, y: np.ndarray) -> float:
        rows = self.scored_rows(len(y))
        return multiclass_log_loss(y[rows], self.oof_cal[rows])

    @property
    def description(self) -> str:
        return "features + " + ", ".join(self.sources) if self.sources else "features only"


def fit_stacker(
    inputs: StackerInputs,
    stacker: StackerConfig,
    seed: int,
    feature_groups: Sequence[str],
    sources: list[str],
    *,
    fold_features: Sequence[FoldFeature] = (),
    progress: bool = False,
) -> StackerFit:
    """Cross-fitted stacker followed by nested calibration, over every column of ``inputs``; with
    several training sources every row trains, the primary rows alone calibrate and are scored."""
    kwargs = inputs.fit_kwargs(fold_features)
    several = "scored" in kwargs  # none for one source: today's path exactly
    bar = tqdm(total=len(np.unique(inputs.folds)), desc="stacker folds", disable=not progress)
    fit = fit_calibrated(inputs.X, inputs.y, inputs.folds, stacker, seed, progress=bar, **kwargs)
    bar.close()
    model = StackerModel.from_fold_models(
        fit.raw.models,
        fit.calibrator,
        feature_config={"groups": list(feature_groups), "sources": list(sources)},
        metadata={"best_iterations": fit.raw.best_iterations, "seed": seed, "tie_handling": fit.raw.tie_handling},
        fold_transformers=fit.raw.fold_transformers if fold_features else None,
    )
    return StackerFit(
        fit.raw.oof,
        fit.oof_cal,
        model,
        list(sources),
        fit.raw.fold_transformers,
        scored=fit.scored if several else None,
        per_source=oof_per_source(inputs.train, fit.raw.oof) if several else None,
        tie_handling=fit.raw.tie_handling,
        calibration_s=fit.calibration_s,
    )
