"""What a run decided, carried by its bundle: the prior guard's verdict and what was submitted; and the one
reading of ``stacker=`` every way of scoring a model shares (:func:`stacker_to_score`).

Why: the run may submit the class prior instead of a stacker that scores worse (``pipelines.model.prior_guard``);
a bundle that only held the stackers would let ``predict`` and the Kaggle scoring path submit the
rejected stacker, silently. The bundle records the decision and scoring repeats it unless told otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.runtime.errors import UserError

PRIOR, STACKER = "class prior", "stacker"
FEATURES, FULL = "features", "full"  # the two stackers a bundle can hold
CHOSEN = "chosen"  # stacker=: the chosen stacker even where the run submitted the class prior
STACKERS = (CHOSEN, FEATURES, FULL)  # what stacker= may name (None: what the run submitted)


class StackerChoiceError(UserError, ValueError):
    """A ``stacker=`` this model cannot score with (unknown, missing, or contradicting ``use_encoders``)."""


def submitted_stacker(model: Any) -> dict:
    """The record of submitting ``model``'s chosen stacker (the bundle's and the report's ``submitted``)."""
    described = getattr(getattr(model, "fit_report_", None), "chosen_description", None)
    description = f"stacker over {described}" if described else "the chosen stacker"
    return {"kind": STACKER, "stacker": model.chosen_stacker_, "description": description}


def decisions_record(decisions: dict | None, model: Any) -> dict:
    """The manifest's ``decisions``: what the run passed, else (a model fitted outside a run) the chosen
    stacker as what is submitted, with no prior-guard verdict."""
    record = dict(decisions or {})
    record.setdefault("prior_guard", None)
    record.setdefault("submitted", submitted_stacker(model))
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


def stacker_to_score(model: Any, stacker: str | None, use_encoders: bool = True) -> str | None:
    """The key of the stacker that scores, or None where the class prior the run submitted does
    (:func:`submitted_prior`). ``stacker``: None what the run submitted (its prior guard's class prior, else the
    chosen stacker); ``"chosen"`` the chosen stacker whatever the guard said; ``"features"`` or ``"full"`` that
    one. ``use_encoders=False``: the features-only stacker. The one reading behind ``predict_proba``, ``predict``
    and the Kaggle scoring path, so that no way of scoring a bundle gives the stacker its run rejected."""
    if stacker is not None and stacker not in STACKERS:
        raise StackerChoiceError(
            f"stacker={stacker!r}: use None (what the run submitted), {CHOSEN!r}, {FEATURES!r} or {FULL!r}"
        )
    if stacker == FULL and not use_encoders:
        raise StackerChoiceError("stacker='full' uses the encoders: it contradicts use_encoders=False")
    if stacker is None and use_encoders and submitted_prior(model) is not None:
        return None
    key = (model.chosen_stacker_ if use_encoders else FEATURES) if stacker in (None, CHOSEN) else stacker
    if key not in model.stackers_:
        raise StackerChoiceError(
            f"stacker={stacker!r}: this model has only {sorted(model.stackers_)} (no encoder finished?)"
        )
    return key
