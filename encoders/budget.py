"""Time-budget projections for one encoder's cross-fit: pure arithmetic, no clocks, no models.

Two decisions use them (``encoders.cross_fit``):

* before the first fold, the **max-length plan**: a short timing probe of the first training
  steps projects a whole fold; when all folds would not fit the budget at the configured
  ``max_length``, the length is halved (down to a floor) for *every* fold. It is decided once,
  before any fold, so all folds see the same inputs and the OOF predictions stay consistent.
* between folds, the **fold decision**: from the finished folds' measured times, project the
  rest. Two cases:

  - test rows scored *after* the fit (``pipelines.model.run``: the fit never sees them, every fold
    model scores them afterwards): a fold starts only if training the remaining folds **and**
    scoring the test rows with every fold model fit. The per-fold test seconds are projected from
    the finished folds' OOF prediction rate (:func:`post_fit_test_s_per_fold`), since test scoring
    is the same forward pass on other rows.
  - test rows scored *inside* the folds (``pipelines.train_encoder --test``): project
    ``folds left x (train + OOF predict) + folds left x test predict``; when the whole would
    overrun, test inference is cut first (the test probabilities then average only the folds that
    scored test); when even the training of the remaining folds would not fit, stop.

Every projection is multiplied by ``SAFETY`` (a fold is rarely faster than the mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SAFETY = 1.1
# post-fit test scoring under a deadline runs in up to three calls: two timed probes of these many rows, then
# the rest (``pipelines.model.scoring.score_in_time``); each call loads every fold model again
PROBE_ROWS = (8, 256)
FORWARD_SHARE = 1 / 3  # one forward pass costs about a third of a forward + backward training pass


@dataclass
class FoldTiming:
    """Measured seconds of one finished fold; ``test_s`` is None when test inference was cut (or the test
    rows are scored after the fit). ``oof_s``/``oof_rows``/``load_s``/``processes``: what projects the
    post-fit test scoring (None/0 in checkpoints older than these fields)."""

    fit_s: float  # model load + encode + training + OOF prediction
    test_s: float | None
    oof_s: float | None = None  # OOF prediction alone (encode + forward)
    oof_rows: int = 0
    load_s: float = 0.0  # model load: paid again by each fold model that scores the test rows later
    processes: int = 1  # processes that shared the OOF prediction (the post-fit scoring runs in one)

    @classmethod
    def from_record(cls, record: dict, oof_rows: int = 0) -> FoldTiming:
        """From a fold checkpoint (older checkpoints hold only the total ``seconds``)."""
        if "train_s" in record:
            return cls(
                record["train_s"] + record["oof_s"],
                record.get("test_s"),
                oof_s=record["oof_s"],
                oof_rows=oof_rows,
                load_s=float(record.get("load_s", 0.0)),
                processes=int(record.get("processes", 1)),
            )
        return cls(float(record["seconds"]), None)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def scoring_calls(test_rows: int, probe_rows: tuple[int, ...] = PROBE_ROWS) -> int:
    """How many calls (so model loads) the probed post-fit scoring of ``test_rows`` rows makes: one per
    probe that has rows left, plus one for the rest."""
    calls, start = 0, 0
    for size in probe_rows:
        if start >= test_rows:
            return calls
        calls, start = calls + 1, start + size
    return calls + (1 if start < test_rows else 0)


def post_fit_test_s_per_fold(done: list[FoldTiming], test_rows: int) -> float | None:
    """Projected seconds for one fold model to score ``test_rows`` rows after the fit: its load once per
    scoring call (:func:`scoring_calls`) plus the rows at the fold's measured OOF prediction rate, times the
    processes that shared that prediction (the post-fit scoring runs in one). The mean over the finished
    folds; None when none measured its rate."""
    loads = scoring_calls(test_rows)
    per_fold = [
        t.load_s * loads + t.oof_s / t.oof_rows * test_rows * t.processes
        for t in done
        if t.oof_s is not None and t.oof_rows > 0
    ]
    return _mean(per_fold) if per_fold else None


def should_start_fold(
    now: float,
    deadline: float | None,
    done: list[FoldTiming],
    folds_left: int,
    safety: float = SAFETY,
    *,
    test_rows: int = 0,
    n_folds: int = 0,
) -> tuple[bool, dict]:
    """Start the next fold only if the training (with OOF prediction) of every remaining fold fits, and,
    with ``test_rows`` scored after the fit, also the scoring of those rows by all ``n_folds`` fold models.

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
    train = folds_left * fit * safety
    record: dict[str, Any] = {
        "seconds_left": round(left, 1),
        "projected_fit_s_per_fold": round(fit, 2),
        "projected_s_remaining_folds_without_test": round(train, 1),
    }
    test = 0.0
    if test_rows > 0:
        per_fold = post_fit_test_s_per_fold(done, test_rows)
        test = 0.0 if per_fold is None else n_folds * per_fold * safety
        record.update(
            test_rows=test_rows,
            projected_test_s_per_fold=None if per_fold is None else round(per_fold, 2),
            projected_s_test_scoring_all_folds=round(test, 1),
            projected_s_remaining_folds_and_test=round(train + test, 1),
        )
    if train + test > left:
        record["reason"] = (
            f"training the {folds_left} remaining fold(s) needs ~{train:.0f}s"
            + (f" and scoring {test_rows} test rows with {n_folds} fold models ~{test:.0f}s" if test_rows > 0 else "")
            + f", {left:.0f}s left"
        )
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


def project_probe_total(
    fold: dict, n_folds: int, load_s: float, test_after_fit: bool, safety: float = SAFETY, loads: int = 1
) -> dict:
    """The max-length plan's projection from one probe's fold projection (:func:`project_fold_seconds`):
    every fold trained and OOF-predicted, plus the test scoring. Scored after the fit, every fold model
    loads again (``loads`` times: :func:`scoring_calls`) and scores all test rows (``n_folds x (loads x load
    + test)``); scored inside the folds, at least one fold scores them (later ones may be cut). Seconds,
    ``safety`` included."""
    test = n_folds * (loads * load_s + fold["test_s"]) if test_after_fit else fold["test_s"]
    return {"test_scoring_s": round(test * safety, 1), "total_s": (n_folds * fold["fit_s"] + test) * safety}


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
