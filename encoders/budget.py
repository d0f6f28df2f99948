"""Time-budget projections for one encoder's cross-fit: pure arithmetic, no clocks, no models.

Two decisions use them (``encoders.cross_fit``):

* before the first fold, the **max-length plan**: a short timing probe of the first training
  steps projects a whole fold; when all folds would not fit the budget at the configured
  ``max_length``, the length is halved (down to a floor) for *every* fold. It is decided once,
  before any fold, so all folds see the same inputs and the OOF predictions stay consistent.
* between folds, the **fold decision**: from the finished folds' measured times, project the
  rest as ``folds left x (train + OOF predict) + folds left x test predict``. When the whole
  would overrun, test inference is cut first (the test probabilities then average only the
  folds that scored test); when even the training of the remaining folds would not fit, stop.

Every projection is multiplied by ``SAFETY`` (a fold is rarely faster than the mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAFETY = 1.1
FORWARD_SHARE = 1 / 3  # one forward pass costs about a third of a forward + backward training pass


@dataclass
class FoldTiming:
    """Measured seconds of one finished fold; ``test_s`` is None when test inference was cut."""

    fit_s: float  # model load + encode + training + OOF prediction
    test_s: float | None

    @classmethod
    def from_record(cls, record: dict) -> FoldTiming:
        """From a fold checkpoint (older checkpoints hold only the total ``seconds``)."""
        if "train_s" in record:
            return cls(record["train_s"] + record["oof_s"], record.get("test_s"))
        return cls(float(record["seconds"]), None)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def should_start_fold(
    now: float, deadline: float | None, done: list[FoldTiming], folds_left: int, safety: float = SAFETY
) -> tuple[bool, dict]:
    """Start the next fold only if the training (with OOF prediction) of every remaining fold fits.

    ``folds_left`` counts the fold about to start. Returns (start?, record of the projection).
    """
    if deadline is None:
        return True, {}
    left = deadline - now
    if left <= 0:
        return False, {"seconds_left": round(left, 1), "reason": "time budget spent"}
    if not done:
        return True, {"seconds_left": round(left, 1)}  # nothing measured yet: the first fold runs
    fit = _mean([t.fit_s for t in done])
    need = folds_left * fit * safety
    record: dict[str, float | str] = {
        "seconds_left": round(left, 1),
        "projected_fit_s_per_fold": round(fit, 2),
        "projected_s_remaining_folds_without_test": round(need, 1),
    }
    if need > left:
        record["reason"] = f"training the {folds_left} remaining fold(s) needs ~{need:.0f}s, {left:.0f}s left"
        return False, record
    return True, record


def should_score_test(
    now: float,
    deadline: float | None,
    done: list[FoldTiming],
    folds_after: int,
    current_fit_s: float,
    safety: float = SAFETY,
) -> tuple[bool, dict]:
    """After a fold's OOF prediction: score test too, if that still leaves room to train the folds after it.

    The test time is projected from earlier folds that scored test (the first fold always does,
    since nothing is known before it). Greedy: earlier folds score test while the budget allows,
    later ones are cut, so the test average uses as many folds as fit.
    """
    if deadline is None:
        return True, {}
    tests = [t.test_s for t in done if t.test_s is not None]
    if not tests:
        return True, {"reason": "no test timing yet"}
    fit = _mean([t.fit_s for t in done] + [current_fit_s])
    test = _mean(tests)
    left = deadline - now
    need = (folds_after * fit + test) * safety
    record: dict[str, float | str] = {
        "seconds_left": round(left, 1),
        "projected_test_s": round(test, 2),
        "projected_s_this_test_and_remaining_folds": round(need, 1),
    }
    if need > left:
        record["reason"] = (
            f"test inference (~{test:.0f}s) plus {folds_after} more fold(s) "
            f"(~{fit:.0f}s each) would pass the time budget ({left:.0f}s left)"
        )
        return False, record
    return True, record


@dataclass
class ProbeTiming:
    """What a short training probe at one ``max_length`` measured."""

    max_length: int
    load_s: float  # model + tokenizer load
    encode_s_per_sequence: float
    seconds_per_step: float
    rows_per_step: int  # sequences per optimiser step (batch size x gradient accumulation)


def project_fold_seconds(
    probe: ProbeTiming, n_train_sequences: int, steps: int, n_oof_sequences: int, n_test_sequences: int
) -> dict:
    """Projected seconds of one fold from a probe: ``fit_s`` (load, encode, train, OOF predict) and
    ``test_s`` (encode and predict test). Prediction is forward only: ``FORWARD_SHARE`` of a training
    pass per sequence."""
    per_predicted = probe.encode_s_per_sequence + probe.seconds_per_step / max(probe.rows_per_step, 1) * FORWARD_SHARE
    train = probe.load_s + n_train_sequences * probe.encode_s_per_sequence + steps * probe.seconds_per_step
    return {"fit_s": train + n_oof_sequences * per_predicted, "test_s": n_test_sequences * per_predicted}


def total_steps(n_sequences: int, batch_size: int, grad_accum: int, epochs: float, max_steps: int | None) -> int:
    """Optimiser steps of one fold, as ``TransformerClassifier.fit`` counts them."""
    steps_per_epoch = math.ceil(math.ceil(n_sequences / batch_size) / grad_accum)
    steps = max(1, math.ceil(steps_per_epoch * epochs))
    return min(steps, max_steps) if max_steps is not None else steps


def next_max_length(current: int, floor: int) -> int | None:
    """Half the length, not below ``floor``; None when already at (or below) the floor."""
    if current <= floor:
        return None
    return max(current // 2, floor)
