"""One road from a fitted model and a set of battles to probabilities: :func:`score`.

Why one: ``full_run`` (``pipelines.model.run.Publisher``), ``predict`` (``bundle_scoring.predict_file``) and the
Kaggle notebook (``bundle_scoring.score_bundle``) each scored a test set with rules of their own. Here, once:
which stacker scores (or the class prior the run submitted: ``pipelines.bundle.decisions.stacker_to_score``), the
encoders' probabilities (in this process or one process per GPU, probed and projected under a deadline: Kaggle
fails a notebook that runs past its limit), the stacker over them, and the test calibration, decided on the
whole set. The decision comes back with the probabilities; nothing is stored on the model.

    proba, decision = score(model, test, stacker=None, test_calibration="auto")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from arena_schema import CLASS_COLUMNS, N_CLASSES
from encoders.budget import PROBE_ROWS
from pipelines.bundle.decisions import stacker_to_score, submitted_prior
from pipelines.bundle.model_bundle import require_base
from pipelines.data.folds import prompt_groups
from pipelines.data.tables import read_proba_file
from pipelines.model.battles_input import as_battles
from pipelines.model.model_features import extractor_of, with_fold_feature_columns
from pipelines.runtime.errors import UserError
from stacking.calibration_choice import choose_test_calibration, prior_choice, validate_test_calibration
from stacking.sources import source_features

SAFETY = 1.2  # projected seconds are multiplied by this before comparing with the time left
Predictor = Callable[[pd.DataFrame], np.ndarray]


def project_seconds(small: tuple[int, float], large: tuple[int, float], rows: int) -> float:
    """Seconds for one more call on ``rows`` rows from two timed calls (rows, seconds): fixed + per row."""
    (n1, t1), (n2, t2) = small, large
    per_row = max((t2 - t1) / (n2 - n1), t2 / n2 / 10) if n2 > n1 else t2 / n2
    fixed = max(t1 - per_row * n1, 0.0)
    return fixed + per_row * rows


def _timed(clock: Callable[[], float], fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = clock()
    out = fn()
    return out, clock() - start


def score_in_time(
    predict: Predictor,
    frame: pd.DataFrame,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    probe_rows: tuple[int, ...] = PROBE_ROWS,
) -> tuple[np.ndarray | None, dict]:
    """``predict(frame)`` under ``deadline`` (on ``clock``): two timed probes of ``probe_rows`` rows, then the
    rest only if :func:`project_seconds` (x ``SAFETY``) fits the time left. Returns the (n, 3) rows in
    ``frame``'s order, or None when skipped, and the record (``probes``, ``projected_rest_s``, ``rest_s``,
    ``decision``: "used" or why skipped). Each call loads the fold models again (the budget reserves that:
    ``encoders.budget.scoring_calls``), so without a deadline there is one call and no probe."""
    n = len(frame)
    record: dict[str, Any] = {}
    if deadline is None:
        proba, seconds = _timed(clock, partial(predict, frame))
        return proba, {"rest_s": seconds, "decision": "used"}
    parts, timings, start = [], [], 0
    for size in probe_rows:
        if start >= n:
            break
        if deadline - clock() <= 0:
            record["decision"] = "skipped: time budget spent before the encoders started"
            return None, record
        rows = frame.iloc[start : start + size]
        proba, seconds = _timed(clock, partial(predict, rows))
        parts.append(proba)
        timings.append((len(rows), seconds))
        start += len(rows)
    record["probes"] = [{"rows": r, "seconds": s} for r, s in timings]
    if start < n:
        projected = project_seconds(timings[0], timings[-1], n - start)
        record["projected_rest_s"] = projected
        left = deadline - clock()
        if projected * SAFETY > left:
            record["decision"] = (
                f"skipped: the other {n - start} rows need ~{projected:.0f} s (x{SAFETY}), {left:.0f} s left"
            )
            return None, record
        rest, seconds = _timed(clock, lambda: predict(frame.iloc[start:]))
        parts.append(rest)
        record["rest_s"] = seconds
    record["decision"] = "used"
    return np.concatenate(parts), record


@dataclass
class EncoderScoring:
    """How the encoders' probabilities of a set of battles are made, and what was made.

    ``predictor(name, fold_models)``: a frame -> (n, 3) function (default: the fold models in this process;
    ``bundle_scoring.multi_gpu_scoring``: one process per GPU). ``proba``: each encoder's probabilities, made once
    (a run scores the same test set after each fit step); ``records``: each encoder's probe-and-project record
    under a deadline (an encoder projected not to fit is not probed again)."""

    predictor: Callable[[str, Any], Predictor] | None = None
    clock: Callable[[], float] = time.monotonic
    probe_rows: tuple[int, ...] = PROBE_ROWS
    progress: bool = False
    proba: dict[str, np.ndarray] = field(default_factory=dict)
    records: dict[str, dict] = field(default_factory=dict)

    def of(self, name: str, fold_models: Any, battles: pd.DataFrame, deadline: float | None) -> np.ndarray | None:
        """Encoder ``name``'s probabilities of ``battles``; None when they would not fit ``deadline``."""
        if name in self.proba:
            return self.proba[name]
        if name in self.records:
            return None
        require_base(name, fold_models)
        if self.predictor is not None:
            predict = self.predictor(name, fold_models)
        else:
            predict = partial(fold_models.predict_proba, progress=self.progress)
        if deadline is None:
            self.proba[name] = predict(battles)
            return self.proba[name]
        proba, self.records[name] = score_in_time(predict, battles, deadline, self.clock, self.probe_rows)
        if proba is not None:
            self.proba[name] = proba
        return proba


class ScoringError(UserError, ValueError):
    """Probabilities a stacker needs and was not given (an extra source, an encoder without its fold models),
    or given in the wrong shape."""


def score(
    model: Any,
    test: pd.DataFrame,
    *,
    stacker: str | None,
    test_calibration: str | None,
    deadline: float | None = None,
    sources: Mapping[str, pd.DataFrame | str | Path] | None = None,
    encoders: EncoderScoring | None = None,
    use_encoders: bool = True,
) -> tuple[np.ndarray | None, dict]:
    """(n, 3) probabilities of ``test`` (A wins, B wins, tie) and the decision behind them; None instead of the
    probabilities when an encoder's scoring would not fit ``deadline`` (the decision says why).

    ``stacker`` and ``use_encoders``: as :func:`pipelines.bundle.decisions.stacker_to_score` reads them (None: what
    the run submitted). ``test_calibration``: ``auto``, ``in-source`` or ``new-source`` (None: the model's),
    decided once on all of ``test``. ``sources``: the test probabilities of the extra sources the model was
    trained with (frame or file). ``encoders``: how the encoders' probabilities are made (default: in this
    process; probabilities already in ``encoders.proba`` are used as they are).

    The decision: ``stacker`` (the key that scored; None for the class prior), ``test_choice`` (the calibration
    used and why) and ``encoders`` (each encoder's probe-and-project record under a deadline)."""
    check_is_fitted(model, "stackers_")
    key = stacker_to_score(model, stacker, use_encoders)
    battles, _ = as_battles(test, "X", labelled=False)
    requested = validate_test_calibration(test_calibration or model.test_calibration)
    prior = submitted_prior(model) if key is None else None
    if prior is not None:  # what the run submitted: its stacker did not beat the class prior out of fold
        return np.tile(prior, (len(battles), 1)), {"stacker": None, "test_choice": prior_choice(requested)}
    assert key is not None
    encoders = encoders or EncoderScoring(progress=model.progress)
    computed, decision = {}, {"stacker": key, "encoders": encoders.records}
    for name in model.stackers_[key].feature_config.get("sources", []):
        if name not in encoders.proba and (name in (sources or {}) or name not in model.encoder_models_):
            continue  # given in ``sources`` (an extra source), or an encoder without fold models (refused below)
        proba = encoders.of(name, model.encoder_models_.get(name), battles, deadline)
        if proba is None:
            return None, {**decision, "skipped": f"{name}: {encoders.records[name]['decision']}"}
        computed[name] = proba
    proba, decision["test_choice"] = _stacker_proba(model, battles, key, requested, sources or {}, computed)
    return proba, decision


def _stacker_proba(
    model: Any,
    battles: pd.DataFrame,
    key: str,
    test_calibration: str,
    sources: Mapping[str, pd.DataFrame | str | Path],
    encoder_proba: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, dict]:
    """Stacker ``key``'s calibrated probabilities of parsed ``battles`` and the test calibration they used."""
    stacker = model.stackers_[key]
    frames = [extractor_of(model, cache=False).transform(battles)]
    for name in stacker.feature_config.get("sources", []):
        frames.append(_source_columns(model, name, battles, sources, encoder_proba))
    X = pd.concat(frames, axis=1) if len(frames) > 1 else frames[0]
    if stacker.needs_battles and model.embedder:
        battles = with_fold_feature_columns(model, battles)
    raw = stacker.predict_proba_uncalibrated(X, battles if stacker.needs_battles else None)
    reference = getattr(model, "shift_reference_", None)
    choice = choose_test_calibration(test_calibration, stacker, reference, X, prompt_groups(battles), model.seed)
    return stacker.calibrate(raw, new_source=choice["calibration"] == "new-source"), choice


def _source_columns(
    model: Any, name: str, battles: pd.DataFrame, given: Mapping[str, Any], computed: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Probability source ``name``'s stacker columns for ``battles``."""
    if name in computed:
        proba = _proba_frame(np.asarray(computed[name], dtype=np.float64), battles, name)
    elif name in given:
        value = given[name]
        proba = value if isinstance(value, pd.DataFrame) else read_proba_file(value)
    elif name in (model.extra_sources or {}):
        raise ScoringError(f"the model was trained with probability source {name!r}: pass sources={{name: ...}}")
    else:
        raise ScoringError(
            f"encoder {name!r}: its fold models were not kept (save_models); use predict_proba(..., use_encoders=False)"
        )
    try:
        return source_features(proba, battles["id"], name)
    except ValueError as exc:  # the given probabilities lack some of the battles' ids
        raise ScoringError(str(exc)) from None


def _proba_frame(proba: np.ndarray, battles: pd.DataFrame, name: str) -> pd.DataFrame:
    """id + the three class columns, in ``battles``' row order."""
    if proba.shape != (len(battles), N_CLASSES):
        raise ScoringError(
            f"encoder {name!r}: probabilities of shape {proba.shape}, expected ({len(battles)}, {N_CLASSES})"
        )
    out = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    out.insert(0, "id", battles["id"].astype(str).to_numpy())
    return out
