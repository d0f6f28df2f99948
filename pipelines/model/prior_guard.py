"""Never submit a model that is worse than knowing nothing.

The class prior (train label frequencies, scored out of fold with nested priors) is the loss any
submission must beat. A stacker that does worse (too little data, a broken feature, a bad
``--params``) would score worse on the leaderboard than a constant; the run then submits the
prior instead, says so loudly, and records why, unless ``--allow-worse-than-prior``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from arena_schema import N_CLASSES

log = logging.getLogger("arena_pref.prior_guard")


@dataclass(frozen=True)
class PriorDecision:
    """What to submit, and the numbers it was decided on (``as_dict`` goes into report.json)."""

    use_prior: bool
    worse_than_prior: bool
    stacker_oof_log_loss: float
    prior_oof_log_loss: float
    allowed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def decide(stacker_oof_log_loss: float, prior_oof_log_loss: float, allow_worse: bool = False) -> PriorDecision:
    """Submit the prior when the calibrated stacker's OOF loss is not below the prior's (or is NaN)."""
    worse = not (np.isfinite(stacker_oof_log_loss) and stacker_oof_log_loss < prior_oof_log_loss)
    if worse:
        log.warning(
            "stacker OOF log loss %.5f is not better than the class prior's %.5f: %s",
            stacker_oof_log_loss,
            prior_oof_log_loss,
            "submitting the stacker anyway (--allow-worse-than-prior)"
            if allow_worse
            else "submitting the class prior instead (--allow-worse-than-prior to keep the stacker)",
        )
    return PriorDecision(
        use_prior=worse and not allow_worse,
        worse_than_prior=worse,
        stacker_oof_log_loss=float(stacker_oof_log_loss),
        prior_oof_log_loss=float(prior_oof_log_loss),
        allowed=allow_worse,
    )


def prior_probabilities(y: np.ndarray, n_rows: int) -> np.ndarray:
    """Train label frequencies (add-one smoothed, never 0) for each of ``n_rows`` test rows."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=N_CLASSES)[:N_CLASSES] + 1.0
    return np.tile(counts / counts.sum(), (n_rows, 1))
