"""What a run decided and when (``report.json`` -> ``plan``), as a typed record instead of a dict."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.stages.stacker_stage import StackerFit


@dataclass
class RunPlan:
    """Submissions written (sources, OOF loss, seconds from start) and the encoder decisions.

    Encoder fields stay None when the run has no encoders, and are then left out of the report.
    """

    time_budget_hours: float | None
    encoders: list[str]
    submission_writes: list[dict] = field(default_factory=list)
    encoder_deadline_s_from_start: float | None = None
    encoder_runs: dict[str, dict] | None = None
    encoders_finished: list[str] | None = None
    encoders_used: list[str] | None = None
    encoder_stacker_error: str | None = None
    seconds_left_at_end: float | None = None

    def record_write(self, fit: StackerFit, y: np.ndarray, at_s: float) -> None:
        self.submission_writes.append(
            {"sources": fit.sources, "oof_log_loss": round(fit.log_loss(y), 5), "at_s": round(at_s, 1)}
        )

    def to_dict(self) -> dict:
        out: dict = {
            "time_budget_hours": self.time_budget_hours,
            "encoders": self.encoders,
            "submission_writes": self.submission_writes,
        }
        if self.encoder_runs is not None:
            out.update(
                encoder_deadline_s_from_start=self.encoder_deadline_s_from_start,
                encoder_runs=self.encoder_runs,
                encoders_finished=self.encoders_finished,
                encoders_used=self.encoders_used,
            )
        if self.encoder_stacker_error is not None:
            out["encoder_stacker_error"] = self.encoder_stacker_error
        if self.seconds_left_at_end is not None:
            out["seconds_left_at_end"] = self.seconds_left_at_end
        return out
