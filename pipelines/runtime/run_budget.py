"""A run's time budget as one object the run hands its fit, as LightGBM's ``fit(callbacks=...)`` and the Hugging
Face Trainer's callbacks carry run control beside the data.

Why: the deadline, the test rows the fit must leave time to score and the reserve kept after the encoders were
three loose arguments of ``fit`` and arithmetic inside the estimator. The estimator's ``fit`` now takes data only;
``pipelines.model.run`` owns the budget and gives it to ``fit_steps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

WRITES_S = 60.0  # the run's writes after its last fit (submission, bundle, report) fit in this
STACKER_FITS = 2  # after the encoders: the stacker with their probabilities, and room for the writes' own fit
STACKER_FITS_SEVERAL_SOURCES = 4  # plus the leave-one-source-out fits of the new-source calibrator


@dataclass(frozen=True)
class RunBudget:
    """``deadline`` on ``clock`` (None: no limit); ``test_rows`` rows will be scored after the fit, and every
    encoder's fold plan reserves that time."""

    deadline: float | None = None
    test_rows: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if self.test_rows < 0:
            raise ValueError(f"test_rows {self.test_rows}: must be 0 or more")

    @classmethod
    def from_hours(
        cls, hours: float | None, started: float, test_rows: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> RunBudget:
        """A budget of ``hours`` from ``started`` (on ``clock``); None hours: no deadline."""
        return cls(None if hours is None else started + hours * 3600, test_rows, clock)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def encoder_deadline(self, stacker_seconds: float, several_sources: bool) -> float | None:
        """When the encoders must be done: the deadline less the stacker fits that follow them (each about as
        long as the features-only one, ``stacker_seconds``) and the writes."""
        if self.deadline is None:
            return None
        fits = STACKER_FITS_SEVERAL_SOURCES if several_sources else STACKER_FITS
        return self.deadline - (fits * stacker_seconds + WRITES_S)


NO_BUDGET = RunBudget()
