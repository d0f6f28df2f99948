"""What a run decided and when (``report.json`` -> ``plan``), as a typed record instead of a dict."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunPlan:
    """Submissions written (sources, OOF loss, seconds from start: the run fills these and the budget) and
    the encoder decisions (the fit's).

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
