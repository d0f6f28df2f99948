"""What a run decided, carried by its bundle: the prior guard's verdict and what was submitted.

Why: the run may submit the class prior instead of a stacker that scores worse (``pipelines.stages.prior_guard``);
a bundle that only held the stackers would let ``predict`` and the Kaggle scoring path submit the
rejected stacker, silently. The bundle records the decision and scoring repeats it unless told otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PRIOR, STACKER = "class prior", "stacker"


def decisions_record(decisions: dict | None, model: Any) -> dict:
    """The manifest's ``decisions``: what the run passed, else (a model fitted outside a run) the chosen
    stacker as what is submitted, with no prior-guard verdict."""
    record = dict(decisions or {})
    record.setdefault("prior_guard", None)
    record.setdefault(
        "submitted", {"kind": STACKER, "stacker": model.chosen_stacker_, "description": "the chosen stacker"}
    )
    return record


def prior_submission(prior: np.ndarray) -> dict:
    return {
        "kind": PRIOR,
        "stacker": None,
        "description": "the class prior (prior guard)",
        "proba": [float(p) for p in np.asarray(prior, dtype=np.float64)],
    }


def check_decisions(record: object, stackers: list[str]) -> dict:
    """The manifest's ``decisions``, its shape checked (ValueError naming what is wrong)."""
    if not isinstance(record, dict) or not isinstance(record.get("submitted"), dict):
        raise ValueError("decisions: no record of what the run submitted")
    submitted = record["submitted"]
    if submitted.get("kind") == STACKER:
        if submitted.get("stacker") not in stackers:
            raise ValueError(f"decisions: submitted stacker {submitted.get('stacker')!r} is not one of {stackers}")
    elif submitted.get("kind") == PRIOR:
        proba = np.asarray(submitted.get("proba", []), dtype=np.float64)
        if proba.shape != (3,) or not np.isfinite(proba).all() or (proba <= 0).any() or abs(proba.sum() - 1) > 1e-6:
            raise ValueError(f"decisions: class prior {submitted.get('proba')!r} is not 3 probabilities")
    else:
        raise ValueError(f"decisions: submitted kind {submitted.get('kind')!r} is neither {STACKER!r} nor {PRIOR!r}")
    return record


def submitted_prior(model: Any) -> np.ndarray | None:
    """The class prior the run submitted instead of its stacker, or None when it submitted a stacker."""
    submitted = (getattr(model, "decisions_", None) or {}).get("submitted") or {}
    if submitted.get("kind") != PRIOR:
        return None
    return np.asarray(submitted["proba"], dtype=np.float64)


def prior_in_place_of(model: Any, stacker: str | None, use_encoders: bool = True) -> np.ndarray | None:
    """The class prior to score with instead of a stacker: the run submitted it and the caller named no
    stacker (``stacker=None``, encoders not turned off). The one rule behind ``predict_proba``, ``predict``
    and the Kaggle scoring path, so that no way of scoring a bundle gives the stacker its run rejected."""
    if stacker is not None or not use_encoders:
        return None
    return submitted_prior(model)
