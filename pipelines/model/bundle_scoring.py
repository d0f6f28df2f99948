"""Score a test set with a trained bundle under a deadline: features-only first, encoders if they fit.

Kaggle fails a notebook that runs past its limit, so the features-only stacker (seconds for 25k rows)
writes the submission before anything slow starts. The encoders then score a small probe and a larger
one; the two timings separate the fixed cost (loading fold models, paid once per call) from the cost
per row, and the rest is scored only if that projection fits before the deadline. Only a complete
encoder prediction replaces the submission (atomically, by ``write_submission``).

With several GPUs, :func:`multi_gpu_predictor` scores each encoder with one process per visible
device (``encoders.parallel_predict``: test rows split in order) and runs the stacker once in this
process on those probabilities.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encoders.budget import PROBE_ROWS
from pipelines.bundle.decisions import prior_in_place_of
from pipelines.data.battles import load_battles
from pipelines.runtime.errors import UsageError
from pipelines.runtime.submission import write_submission

LOG = logging.getLogger("arena_pref")

SAFETY = 1.2  # projected seconds are multiplied by this before comparing with the time left


def _timed(clock: Callable[[], float], fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = clock()
    out = fn()
    return out, clock() - start


def project_seconds(small: tuple[int, float], large: tuple[int, float], rows: int) -> float:
    """Seconds for one more call on ``rows`` rows from two timed calls (rows, seconds): fixed + per row."""
    (n1, t1), (n2, t2) = small, large
    per_row = max((t2 - t1) / (n2 - n1), t2 / n2 / 10) if n2 > n1 else t2 / n2
    fixed = max(t1 - per_row * n1, 0.0)
    return fixed + per_row * rows


Predictor = Callable[[pd.DataFrame], np.ndarray]


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
        left = deadline - clock()
        if left <= 0:
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


def multi_gpu_predictor(model: Any, n_processes: int | None = None, stacker: str | None = None) -> Predictor:
    """``frame -> (n, 3)`` with ``model``'s encoders: each encoder's fold models score the rows in one
    process per visible GPU (``n_processes``: at most that many; without GPUs, that many CPU processes;
    one device or none: in this process), then the stacker (``stacker``: None = the chosen one) runs once here."""
    from encoders.parallel_predict import predict_proba_multi_gpu
    from pipelines.model.estimator import as_battles, require_base

    def predict(frame: pd.DataFrame) -> np.ndarray:
        battles, _ = as_battles(frame, "test", labelled=False)
        computed = {}
        names = list(model.encoder_models_) if stacker == "full" else model.encoder_names_
        for name in names:
            fold_models = model.encoder_models_[name]
            require_base(name, fold_models)
            computed[name] = predict_proba_multi_gpu(
                fold_models.directory, battles, base_path=fold_models.config.model_path, n_processes=n_processes
            )
        return model.predict_proba(frame, encoder_proba=computed, stacker=stacker or "chosen")

    return predict


def score_bundle(
    model: Any,
    test: pd.DataFrame,
    submission: str | Path,
    deadline: float | None = None,
    *,
    predict: Predictor | None = None,
    stacker: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    probe_rows: tuple[int, ...] = PROBE_ROWS,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``submission`` from ``model`` (an ``ArenaPreferenceModel``); ``deadline`` is on ``clock``.
    ``predict``: how the encoder predictions are made (default ``model.predict_proba``, in this process;
    :func:`multi_gpu_predictor` for one process per GPU). ``stacker``: None = what the run submitted (the
    class prior when its prior guard rejected the stacker, else the chosen stacker); ``"chosen"`` the chosen
    stacker whatever the guard said; ``"full"`` the encoders' stacker even when it was not chosen.

    Returns what happened (rows, seconds, projections, which predictions were written)."""
    n = len(test)
    prior = prior_in_place_of(model, stacker)
    if prior is not None:  # what the run submitted: its stacker did not beat the class prior out of fold
        write_submission(test["id"], np.tile(prior, (n, 1)), submission)
        log("the run submitted the class prior (prior guard): the same is written; stacker='chosen' to override")
        return {"rows": n, "writes": [{"sources": "class prior"}], "encoders": [], "encoder_decision": "class prior"}
    stacker = None if stacker == "chosen" else stacker
    with_encoders = predict or partial(model.predict_proba, stacker=stacker or "chosen")
    kept = list(getattr(model, "encoder_models_", {}) or {})  # the bundle's encoders, whichever stacker was chosen
    encoders = kept if stacker == "full" and kept else list(getattr(model, "encoder_names_", []) or [])
    record: dict[str, Any] = {"rows": n, "writes": [], "encoders": encoders}
    p0, seconds = _timed(clock, lambda: model.predict_proba(test, use_encoders=False))
    write_submission(test["id"], p0, submission)
    record["features_only_s"] = seconds
    record["writes"].append({"sources": "features-only", "at_s": seconds})
    log(f"features-only submission written: {n} rows in {seconds:.1f} s")
    if not record["encoders"]:
        record["encoder_decision"] = "no encoders in the bundle"
        return record
    if (stacker or getattr(model, "chosen_stacker_", "full")) != "full":  # kept, not chosen: stacker="full"
        record["encoder_decision"] = "the chosen stacker uses no encoder (the one with encoders was not better)"
        log(record["encoder_decision"] + "; the features-only submission stands")
        return record
    proba, scoring = score_in_time(with_encoders, test, deadline, clock, probe_rows)
    record["encoder_decision"] = scoring.pop("decision")
    record.update(scoring)
    if proba is None:
        log(record["encoder_decision"] + "; the features-only submission stands")
        return record
    write_submission(test["id"], proba, submission)
    record["writes"].append({"sources": record["encoders"]})
    log(f"submission with encoders {record['encoders']} written over the features-only one")
    return record


def predict_file(
    model_dir: str | Path,
    test_path: str | Path,
    out_path: str | Path,
    sources: dict[str, str] | None = None,
    n_jobs: int = 2,
    progress: bool = True,
    *,
    encoder_base_paths: dict[str, str] | None = None,
    use_encoders: bool = True,
    stacker: str | None = None,
    calibration: str | None = None,
    require_signature: bool = False,
) -> pd.DataFrame:
    """Score ``test_path`` with the bundle and write the submission. ``stacker=None`` and ``use_encoders``:
    what the run submitted, as its bundle records it (the class prior when the prior guard rejected the
    stacker); ``"chosen"``, ``"features"`` or ``"full"`` (or ``use_encoders=False``) score with that stacker.
    ``calibration``: None (the bundle's setting), ``auto``, ``in-source`` or ``new-source`` (what ``auto``
    chose is logged); ``require_signature``: refuse a bundle not signed under ``ARENA_PREF_BUNDLE_KEY``."""
    from pipelines.model.estimator import ArenaPreferenceModel

    model = ArenaPreferenceModel.load(
        model_dir, encoder_base_paths=encoder_base_paths, require_signature=require_signature
    )
    model.set_params(n_jobs=n_jobs, progress=progress)
    unknown = sorted(set(sources or {}) - set(model.extra_sources or {}))
    if unknown:
        raise UsageError(
            f"--source {unknown[0]}: the model was trained without that source"
            f" (its sources: {sorted(model.extra_sources or {})})"
        )
    test, _ = load_battles(test_path, labelled=False)
    if prior_in_place_of(model, stacker, use_encoders) is not None:  # predict_proba returns that prior
        LOG.warning(
            "the run submitted the class prior (its stacker did not beat the prior out of fold): writing the"
            " prior again; --stacker chosen scores with the rejected stacker"
        )
    proba = model.predict_proba(
        test, use_encoders=use_encoders, sources=sources or {}, stacker=stacker, calibration=calibration
    )
    choice = model.last_calibration_
    LOG.info("calibration: %s (%s)", choice["calibration"], choice["why"])
    return write_submission(test["id"], proba, out_path)
