"""What a fit recorded about itself (``model.fit_report_``): rows, folds, OOF scores, the chosen stacker, its
calibration, the encoder plan and the fit's timings.

Why an object, not a dict: the run's report (``pipelines.model.run.build_report``), the bundle and the decisions
read named fields, and a misspelt key fails where it is written instead of as a missing report entry. The bundle
keeps part of it (:data:`FitRecord.KEPT`, plus the test calibration the run's test set resolved to); a loaded
bundle's record holds that part only. :meth:`FitRecord.to_dict` is the JSON the report and bundle embed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class FitRecord:
    """One fit's record; the dict-valued fields are written into ``report.json`` as they are."""

    rows: dict[str, int]  # {"train": n}
    label_counts: dict[str, int]
    folds: dict[str, Any]  # n_folds, rows_per_fold
    oof: dict[str, dict]  # the class prior's and each candidate stacker's OOF scores
    chosen: dict[str, Any]  # sources, oof_log_loss
    calibration: dict[str, Any]  # kind, fitted; then new_source (the fit), test_choice (a saved run's test set)
    features: dict[str, Any] = field(default_factory=dict)  # groups, sources, n_columns
    chosen_description: str | None = None
    stacker: dict[str, Any] = field(default_factory=dict)  # best_iterations, params
    plan: dict[str, Any] = field(default_factory=dict)  # pipelines.model.run_plan.RunPlan.to_dict()
    timings: dict[str, float] = field(default_factory=dict)
    training_sources: dict[str, Any] | None = None  # several training sources only
    oof_per_source: dict[str, Any] | None = None
    peak_rss_mib: dict[str, float] | None = None  # set when the fit is complete

    KEPT: ClassVar[tuple[str, ...]] = ("rows", "label_counts", "folds", "oof", "chosen", "calibration")  # bundled
    _ORDER: ClassVar[tuple[str, ...]] = (
        "rows",
        "label_counts",
        "folds",
        "features",
        "oof",
        "chosen",
        "chosen_description",
        "calibration",
        "stacker",
        "plan",
        "timings",
        "training_sources",
        "oof_per_source",
        "peak_rss_mib",
    )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON, in the order the report has always had; the several-source and memory entries
        only where the fit has them."""
        out = {name: getattr(self, name) for name in self._ORDER}
        return {k: v for k, v in out.items() if v is not None or k == "chosen_description"}

    def kept(self, test_choice: dict | None) -> dict[str, Any]:
        """What a bundle keeps of it, with the test calibration the run's test set resolved to."""
        out = {k: getattr(self, k) for k in self.KEPT}
        out["calibration"] = {**self.calibration, "test_choice": test_choice}
        return out

    @classmethod
    def from_bundle(cls, data: dict) -> FitRecord:
        """The record a bundle's manifest kept (:meth:`kept`; older bundles may lack entries)."""
        kept = {k: dict(v) if isinstance(v := data.get(k), dict) else {} for k in cls.KEPT}
        return cls(kept["rows"], kept["label_counts"], kept["folds"], kept["oof"], kept["chosen"], kept["calibration"])

    @property
    def test_choice(self) -> dict | None:
        """The test calibration a saved run's test set resolved to (None when not recorded)."""
        return self.calibration.get("test_choice")
