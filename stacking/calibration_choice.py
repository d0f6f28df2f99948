"""The test-time calibration choice: which of a stacker's two calibrators scores a set of rows.

Why: the in-source calibrator is right for rows drawn like the training rows (Kaggle's own split) and
overconfident on a new source; a model trained on several tie-bearing sources also keeps a new-source
calibrator (:mod:`stacking.new_source`). ``auto`` picks between the two by adversarial validation
(:mod:`stacking.shift_detection`): in-source unless the rows to score are clearly unlike every training
source. Not to be confused with the in-source calibrator's own kind (``stacking.config.CalibrationKind``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from stacking.model import StackerModel
from stacking.shift_detection import ShiftReference

TestCalibration = Literal["auto", "in-source", "new-source"]
TEST_CALIBRATIONS: tuple[str, ...] = get_args(TestCalibration)
TEST_CALIBRATION_HELP = (  # --test-calibration of full_run and predict
    "in-source: the calibrator fitted on the training sources' OOF rows; new-source: the one fitted on their"
    " leave-one-source-out predictions (several tie-bearing sources only); auto: new-source when adversarial"
    " validation finds the test rows unlike every training source"
)
MIN_DETECT_ROWS = 200  # fewer rows to score than this: no shift can be told, the in-source calibrator is used


def validate_test_calibration(value: str) -> str:
    """``value`` when it is one of :data:`TEST_CALIBRATIONS` (ValueError otherwise)."""
    if value not in TEST_CALIBRATIONS:
        raise ValueError(f"test_calibration must be one of {TEST_CALIBRATIONS}, got {value!r}")
    return value


def choose_test_calibration(
    requested: str,
    model: StackerModel,
    reference: ShiftReference | None,
    X: pd.DataFrame,
    groups: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"requested", "calibration": "in-source" | "new-source", "why", "shift": detector report or None}`` for
    the rows ``X`` (handcrafted feature columns); ``groups`` (their prompts) keep a prompt on one side of the
    detector's folds."""
    validate_test_calibration(requested)
    if requested == "new-source" and model.new_source is None:
        raise ValueError("test_calibration='new-source': this model has no new-source calibrator (one training source)")
    if requested != "auto":
        return {"requested": requested, "calibration": requested, "why": "asked for", "shift": None}
    if model.new_source is None:
        why = "no new-source calibrator (a single tie-bearing training source): in-source"
        return {"requested": requested, "calibration": "in-source", "why": why, "shift": None}
    if reference is None or len(X) < MIN_DETECT_ROWS:
        why = f"{len(X)} rows to score (< {MIN_DETECT_ROWS}): too few to tell a shift, in-source"
        return {"requested": requested, "calibration": "in-source", "why": why, "shift": None}
    report = reference.detect(X, groups, seed=seed).to_dict()
    choice = "new-source" if report["new_source"] else "in-source"
    return {"requested": requested, "calibration": choice, "why": report["why"], "shift": report}


def prior_choice(requested: str) -> dict[str, Any]:
    """The choice recorded when the class prior is returned instead of a stacker: no calibrator was used."""
    why = "the run submitted the class prior (its prior guard rejected the stacker); stacker='chosen' scores with it"
    requested = validate_test_calibration(requested)
    return {"requested": requested, "calibration": "none (class prior)", "why": why, "shift": None}
