"""Score a test set with a trained bundle: ``predict``'s file road (:func:`predict_file`) and the Kaggle notebook's
road under a deadline (:func:`score_bundle`: features-only first, encoders if they fit). Both go through
:func:`pipelines.model.scoring.score`, as ``full_run`` does, so the same bundle, stacker and test calibration give
the same probabilities whichever road scores them.

Kaggle fails a notebook that runs past its limit, so the features-only stacker (seconds for 25k rows)
writes the submission before anything slow starts; the encoders are then probed and projected
(:func:`pipelines.model.scoring.score_in_time`) and only a complete prediction replaces the submission
(atomically, by ``write_submission``). With several GPUs, :func:`multi_gpu_scoring` scores each encoder with one
process per visible device (``encoders.parallel_predict``: test rows split in order) and the stacker runs once
in this process on those probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.bundle.decisions import FEATURES, stacker_to_score
from pipelines.data.battles import load_battles
from pipelines.model.scoring import EncoderScoring, ScoringError, score
from pipelines.runtime.submission import write_submission

LOG = logging.getLogger("arena_pref")


def multi_gpu_scoring(n_processes: int | None = None, **settings: Any) -> EncoderScoring:
    """Encoder probabilities made by one process per visible GPU (``n_processes``: at most that many; without
    GPUs, that many CPU processes; one device or none: in this process); ``settings`` as
    :class:`EncoderScoring`'s (``clock``, ``probe_rows``). The stacker then runs once, here (``score``)."""
    from encoders.parallel_predict import predict_proba_multi_gpu

    def predictor(name: str, fold_models: Any) -> Callable[[pd.DataFrame], np.ndarray]:
        base = fold_models.config.model_path
        return partial(predict_proba_multi_gpu, fold_models.directory, base_path=base, n_processes=n_processes)

    return EncoderScoring(predictor=predictor, **settings)


def score_bundle(
    model: Any,
    test: pd.DataFrame,
    submission: str | Path,
    deadline: float | None = None,
    *,
    stacker: str | None = None,
    test_calibration: str | None = None,
    encoders: EncoderScoring | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``submission`` from ``model`` (an ``ArenaPreferenceModel``) before ``deadline`` (on ``encoders``'
    clock): the features-only stacker first, then the stacker ``stacker`` names (None: what the run submitted,
    the class prior when its prior guard rejected the stacker; ``"chosen"``; ``"full"``: the encoders' stacker
    even when it was not chosen) if its encoders' scoring fits. ``encoders``: how the encoders' probabilities
    are made (default: in this process; :func:`multi_gpu_scoring`).

    Returns what happened (rows, which predictions were written, the encoders' records, the test calibration)."""
    n, encoders = len(test), encoders or EncoderScoring(progress=getattr(model, "progress", False))
    key = stacker_to_score(model, stacker)
    record: dict[str, Any] = {"rows": n, "writes": [], "encoders": []}
    if key is None:  # what the run submitted: its stacker did not beat the class prior out of fold
        prior, decision = score(model, test, stacker=stacker, test_calibration=test_calibration)
        write_submission(test["id"], _scored(prior), submission)
        log("the run submitted the class prior (prior guard): the same is written; stacker='chosen' to override")
        record["writes"].append({"sources": "class prior"})
        return {**record, "encoder_decision": "class prior", "test_choice": decision["test_choice"]}
    record["encoders"] = [
        s for s in model.stackers_[key].feature_config.get("sources", []) if s in model.encoder_models_
    ]
    started = encoders.clock()
    proba, decision = score(model, test, stacker=FEATURES, test_calibration=test_calibration)
    write_submission(test["id"], _scored(proba), submission)
    record.update(features_only_s=encoders.clock() - started, test_choice=decision["test_choice"])
    record["writes"].append({"sources": "features-only", "at_s": record["features_only_s"]})
    log(f"features-only submission written: {n} rows in {record['features_only_s']:.1f} s")
    if key == FEATURES:
        record["encoder_decision"] = (
            "the chosen stacker uses no encoder (the one with encoders was not better)"
            if model.encoder_models_
            else "no encoders in the bundle"
        )
        log(record["encoder_decision"] + "; the features-only submission stands")
        return record
    proba, decision = score(
        model, test, stacker=stacker, test_calibration=test_calibration, deadline=deadline, encoders=encoders
    )
    record.update(encoder_decision=decision.get("skipped", "used"), encoder_scoring=decision["encoders"])
    if proba is None:
        log(record["encoder_decision"] + "; the features-only submission stands")
        return record
    write_submission(test["id"], proba, submission)
    record.update(test_choice=decision["test_choice"])
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
    test_calibration: str | None = None,
    require_signature: bool = False,
) -> pd.DataFrame:
    """Score ``test_path`` with the bundle and write the submission. ``stacker=None`` and ``use_encoders``:
    what the run submitted, as its bundle records it (the class prior when the prior guard rejected the
    stacker); ``"chosen"``, ``"features"`` or ``"full"`` (or ``use_encoders=False``) score with that stacker.
    ``test_calibration``: None (the bundle's setting), ``auto``, ``in-source`` or ``new-source`` (what was used
    is logged); ``require_signature``: refuse a bundle not signed under ``ARENA_PREF_BUNDLE_KEY``."""
    from pipelines.model.estimator import ArenaPreferenceModel

    model = ArenaPreferenceModel.load(
        model_dir, encoder_base_paths=encoder_base_paths, require_signature=require_signature
    )
    model.set_params(n_jobs=n_jobs, progress=progress)
    unknown = sorted(set(sources or {}) - set(model.extra_sources or {}))
    if unknown:
        raise ScoringError(
            f"source {unknown[0]!r}: the model was trained without that source"
            f" (its sources: {sorted(model.extra_sources or {})})"
        )
    test, _ = load_battles(test_path, labelled=False)
    proba, decision = score(
        model, test, stacker=stacker, test_calibration=test_calibration, sources=sources, use_encoders=use_encoders
    )
    if decision["stacker"] is None:
        LOG.warning(
            "the run submitted the class prior (its stacker did not beat the prior out of fold): writing the"
            " prior again; --stacker chosen scores with the rejected stacker"
        )
    choice = decision["test_choice"]
    LOG.info("test calibration: %s (%s)", choice["calibration"], choice["why"])
    return write_submission(test["id"], _scored(proba), out_path)


def _scored(proba: np.ndarray | None) -> np.ndarray:
    """``score``'s probabilities where no deadline could skip them."""
    assert proba is not None
    return proba
