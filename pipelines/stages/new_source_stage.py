"""The run's second calibrator: the new-source calibrator of a stacker, and the shift reference sample.

Why: the in-source calibrator is right for test rows drawn like the training rows (Kaggle's own
split) and overconfident on a new source. With several tie-bearing training sources, each one is
predicted by a stacker trained on the others (:mod:`stacking.source_holdout`) and a new-source
calibrator is fitted on those predictions (:mod:`stacking.new_source`). Which of the two scores a test
set is decided when it is scored (:mod:`stacking.calibration_choice`), against the shift reference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.extractor import group_columns
from pipelines.data.training_sets import source_families
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig
from stacking.cross_fit import FoldFeature
from stacking.metrics import multiclass_log_loss
from stacking.model import StackerModel
from stacking.new_source import NewSourceCalibrator, NewSourceProcedure
from stacking.shift_detection import ShiftReference
from stacking.source_holdout import eligible_holdouts, held_out_source_proba

log = logging.getLogger("arena_pref")


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
    # held out by family: a source is never "new" while its twin (same questions, answers or judges) trains
    family = source_families(inputs.source)
    holdouts = eligible_holdouts(family, inputs.source_has_ties)
    if len(holdouts) < 2:
        why = f"{len(holdouts)} tie-bearing source(s) with >= 200 rows: leave-one-source-out needs 2"
        return NewSourceFit(None, {"fitted": False, "why": why}, 0.0)
    columns = [c for c in inputs.X.columns if c in set(model.columns)]
    kwargs = inputs.fit_kwargs(fold_features)  # the run's stacker fit's own arguments, less the tie flags' form
    proba = held_out_source_proba(
        inputs.X[columns],
        inputs.y,
        family,
        ~kwargs["tieless"],
        kwargs["groups"],
        holdouts,
        config,
        seed,
        sample_weight=kwargs["sample_weight"],
        fold_features=kwargs.get("fold_features", ()),
        battles=kwargs.get("battles"),
    )
    source = family.astype(str)
    y = np.concatenate([inputs.y[source == h] for h in holdouts])
    stacked = np.vstack([proba[h] for h in holdouts])
    names = np.concatenate([np.full(len(proba[h]), h) for h in holdouts])
    calibrator = NewSourceCalibrator(procedure or NewSourceProcedure()).fit(stacked, y, names)
    info = {
        "fitted": True,
        "procedure": calibrator.procedure.name,
        "calibrator": calibrator.to_dict(),
        "held_out_sources": {
            h: _held_out_scores(inputs.y[source == h], proba[h], model, calibrator, h) for h in holdouts
        },
        "note": "figures are on the predictions the calibrator was fitted on (in-sample for it)",
    }
    return NewSourceFit(calibrator, info, time.monotonic() - started)


def _held_out_scores(
    y: np.ndarray, proba: np.ndarray, model: StackerModel, calibrator: NewSourceCalibrator, name: str
) -> dict:
    """One held-out source's LOSO log loss under each calibrator, and what it asks for alone (the median procedure
    takes the middle of these)."""
    return {
        "rows": len(y),
        "loso_log_loss_in_source": round(multiclass_log_loss(y, model.calibrate(proba)), 4),
        "loso_log_loss_new_source": round(multiclass_log_loss(y, calibrator.predict_proba(proba)), 4),
        "fitted_alone": calibrator.source_fits_[name].to_dict(),
    }


def shift_reference(inputs: StackerInputs, seed: int) -> ShiftReference:
    """A per-family sample of the handcrafted feature columns of the training rows (a source's twin is
    not "unlike" it)."""
    columns = [c for cols in group_columns(inputs.X.columns).values() for c in cols]
    family = None if inputs.source is None else source_families(inputs.source)
    return ShiftReference.sample(inputs.X[columns], family, inputs.groups, seed)
