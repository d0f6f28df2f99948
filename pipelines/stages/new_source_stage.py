"""The run's second calibrator and the choice between the two.

Why: the in-source calibrator is right for test rows drawn like the training rows (Kaggle's own
split) and overconfident on a new source. With several tie-bearing training sources, each one is
predicted by a stacker trained on the others (:mod:`stacking.source_holdout`) and a new-source
calibrator is fitted on those predictions (:mod:`stacking.new_source`). ``calibration="auto"``
picks between the two by adversarial validation (:mod:`stacking.shift_detection`): in-source unless
the rows to score are clearly unlike every training source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from features.extractor import group_columns
from pipelines.data.folds import prompt_groups
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig
from stacking.cross_fit import FoldFeature
from stacking.metrics import multiclass_log_loss
from stacking.model import StackerModel
from stacking.new_source import NewSourceCalibrator, NewSourceProcedure
from stacking.shift_detection import ShiftReference
from stacking.source_holdout import eligible_holdouts, held_out_source_proba

log = logging.getLogger("arena_pref")

Calibration = Literal["auto", "in-source", "new-source"]
CALIBRATION_CHOICES: tuple[str, ...] = get_args(Calibration)
CALIBRATION_HELP = (  # --test-calibration of full_run and predict
    "in-source: the calibrator fitted on the training sources' OOF rows; new-source: the one fitted on their"
    " leave-one-source-out predictions (several tie-bearing sources only); auto: new-source when adversarial"
    " validation finds the test rows unlike every training source"
)
MIN_DETECT_ROWS = 200  # fewer rows to score than this: no shift can be told, the in-source calibrator is used


def check_calibration(value: str) -> str:
    if value not in CALIBRATION_CHOICES:
        raise ValueError(f"calibration must be one of {CALIBRATION_CHOICES}, got {value!r}")
    return value


@dataclass
class NewSourceFit:
    """A new-source calibrator and the figures that chose it (per held-out source, before and after)."""

    calibrator: NewSourceCalibrator | None
    info: dict
    seconds: float


def fit_new_source(
    inputs: StackerInputs,
    model: StackerModel,
    config: StackerConfig,
    seed: int,
    *,
    fold_features: Sequence[FoldFeature] = (),
    procedure: NewSourceProcedure | None = None,
) -> NewSourceFit:
    """Leave-one-source-out predictions of every tie-bearing source (>= 200 rows), then the calibrator on
    them; no calibrator (and the reason) when fewer than two such sources trained."""
    started = time.monotonic()
    if inputs.source is None or inputs.source_has_ties is None:
        return NewSourceFit(None, {"fitted": False, "why": "a single training source: no leave-one-source-out"}, 0.0)
    holdouts = eligible_holdouts(inputs.source, inputs.source_has_ties)
    if len(holdouts) < 2:
        why = f"{len(holdouts)} tie-bearing source(s) with >= 200 rows: leave-one-source-out needs 2"
        return NewSourceFit(None, {"fitted": False, "why": why}, 0.0)
    columns = [c for c in inputs.X.columns if c in set(model.columns)]
    proba = held_out_source_proba(
        inputs.X[columns],
        inputs.y,
        inputs.source,
        inputs.source_has_ties,
        inputs.groups,
        holdouts,
        config,
        seed,
        sample_weight=inputs.weight,
        fold_features=fold_features,
        battles=inputs.train if fold_features else None,
    )
    source = np.asarray(inputs.source).astype(str)
    y = np.concatenate([inputs.y[source == h] for h in holdouts])
    stacked = np.vstack([proba[h] for h in holdouts])
    names = np.concatenate([np.full(len(proba[h]), h) for h in holdouts])
    calibrator = NewSourceCalibrator(procedure or NewSourceProcedure()).fit(stacked, y, names)
    per_source = {}
    for h in holdouts:
        rows, p = source == h, proba[h]
        per_source[h] = {
            "rows": int(rows.sum()),
            "loso_log_loss_in_source": round(multiclass_log_loss(inputs.y[rows], model.calibrate(p)), 4),
            "loso_log_loss_new_source": round(multiclass_log_loss(inputs.y[rows], calibrator.predict_proba(p)), 4),
        }
    info = {
        "fitted": True,
        "procedure": calibrator.procedure.name,
        "calibrator": calibrator.to_dict(),
        "held_out_sources": per_source,
        "note": "figures are on the predictions the calibrator was fitted on (in-sample for it)",
    }
    return NewSourceFit(calibrator, info, time.monotonic() - started)


def shift_reference(inputs: StackerInputs, seed: int) -> ShiftReference:
    """A per-source sample of the handcrafted feature columns of the training rows."""
    columns = [c for cols in group_columns(inputs.X.columns).values() for c in cols]
    return ShiftReference.sample(inputs.X[columns], inputs.source, inputs.groups, seed)


def choose_calibration(
    requested: str,
    model: StackerModel,
    reference: ShiftReference | None,
    X: pd.DataFrame,
    battles: pd.DataFrame,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"calibration": "in-source" | "new-source", "why": ..., "shift": detector report or None}`` for the
    rows ``X`` (features) of ``battles`` (their prompts group them in the detector's folds)."""
    check_calibration(requested)
    if requested == "new-source" and model.new_source is None:
        raise ValueError("calibration='new-source': this model has no new-source calibrator (one training source)")
    if requested != "auto":
        return {"requested": requested, "calibration": requested, "why": "asked for", "shift": None}
    if model.new_source is None:
        why = "no new-source calibrator (a single tie-bearing training source): in-source"
        return {"requested": requested, "calibration": "in-source", "why": why, "shift": None}
    if reference is None or len(X) < MIN_DETECT_ROWS:
        why = f"{len(X)} rows to score (< {MIN_DETECT_ROWS}): too few to tell a shift, in-source"
        return {"requested": requested, "calibration": "in-source", "why": why, "shift": None}
    report = reference.detect(X, prompt_groups(battles), seed=seed).to_dict()
    choice = "new-source" if report["new_source"] else "in-source"
    return {"requested": requested, "calibration": choice, "why": report["why"], "shift": report}
