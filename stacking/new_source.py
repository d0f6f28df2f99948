"""Calibration for a source the model has never seen, fitted on leave-one-source-out predictions.

Why: the in-source calibrator is fitted on out-of-fold rows of the training sources; on those the
stacker is about right (temperature ~1). On a new source (other annotators, other tie rate, other
answer styles) the same stacker is overconfident. Its leave-one-source-out predictions
(:mod:`stacking.source_holdout`) are what a new source looks like to it, so a calibrator fitted on
them transfers. A procedure is:

- ``kind``: ``temperature`` (one T), ``vector`` (T plus a tie bias) or ``smoothing`` (a share of the
  votes taken as a coin toss: ``(1 - eps) * p + eps / 3``);
- ``weighting``: ``pooled`` (every row counts once: the biggest source dominates),
  ``per_source`` (each held-out source weighs the same in one joint fit) or ``median`` (each held-out
  source fitted alone, the calibrator takes the median of their parameters: one source whose votes are
  mostly a coin toss to the model, such as a crowd set where a tie means "both failed", does not set the
  strength for every other new source);
- ``label_shift``: ``none``, ``em`` or ``bbse`` (:mod:`stacking.label_shift`), applied to the batch
  being scored after calibration.

Which procedure is the default was chosen by nested LOSO (``benchmarks/new_source_calibration.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np

from stacking.calibration import ProbabilityCalibrator
from stacking.label_shift import label_shift_weights, reweight

NewSourceKind = Literal["temperature", "vector", "smoothing"]  # a stacking.config.CalibrationKind but "none"
Weighting = Literal["pooled", "per_source", "median"]
LabelShift = Literal["none", "em", "bbse"]
KINDS: tuple[NewSourceKind, ...] = get_args(NewSourceKind)
WEIGHTINGS: tuple[Weighting, ...] = get_args(Weighting)
LABEL_SHIFTS: tuple[LabelShift, ...] = get_args(LabelShift)


@dataclass(frozen=True)
class NewSourceProcedure:
    """How the new-source calibrator is fitted and applied (the default won the nested-LOSO study)."""

    kind: NewSourceKind = "smoothing"
    weighting: Weighting = "median"
    label_shift: LabelShift = "none"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"new-source calibration kind must be one of {KINDS}, got {self.kind!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"new-source weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.label_shift not in LABEL_SHIFTS:
            raise ValueError(f"new-source label shift must be one of {LABEL_SHIFTS}, got {self.label_shift!r}")

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.weighting}/{self.label_shift}"


def source_weights(source: np.ndarray, weighting: str) -> np.ndarray:
    """Per-row weights: 1 (``pooled``) or 1 / rows of the row's source (``per_source``, ``median``)."""
    source = np.asarray(source).astype(str)
    if weighting == "pooled":
        return np.ones(len(source))
    _, inverse, counts = np.unique(source, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def fit_each_source(
    kind: str, proba: np.ndarray, y: np.ndarray, source: np.ndarray
) -> dict[str, ProbabilityCalibrator]:
    """What each held-out source asks for alone: one calibrator of ``kind`` per source, on its rows only."""
    return {str(s): ProbabilityCalibrator(kind).fit(proba[source == s], y[source == s]) for s in np.unique(source)}


def median_calibrator(kind: str, fits: list[ProbabilityCalibrator]) -> ProbabilityCalibrator:
    """The median of each parameter over per-source fits (the temperature's on the log scale, where the fit
    searches it): the strength the middle source wants, whatever the most extreme one asks."""
    out = ProbabilityCalibrator(kind)
    out.temperature_ = float(np.exp(np.median([np.log(f.temperature_) for f in fits])))
    out.tie_bias_ = float(np.median([f.tie_bias_ for f in fits]))
    out.smoothing_ = float(np.median([f.smoothing_ for f in fits]))
    return out


@dataclass
class NewSourceCalibrator:
    """A calibrator (and, for ``bbse``, the held-out joint confusion) fitted on LOSO predictions."""

    procedure: NewSourceProcedure = field(default_factory=NewSourceProcedure)
    calibrator: ProbabilityCalibrator | None = None
    train_prior: np.ndarray | None = None
    confusion: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    # fit-time only (the fit report keeps them, a bundle does not): each source's own calibrator
    source_fits_: dict[str, ProbabilityCalibrator] = field(default_factory=dict, repr=False)

    def fit(self, proba: np.ndarray, y: np.ndarray, source: np.ndarray) -> NewSourceCalibrator:
        """``proba``: uncalibrated LOSO predictions of the held-out sources' rows, ``y`` their labels."""
        proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=int)
        weights = source_weights(source, self.procedure.weighting)
        self.source_fits_ = fit_each_source(self.procedure.kind, proba, y, np.asarray(source).astype(str))
        if self.procedure.weighting == "median":
            self.calibrator = median_calibrator(self.procedure.kind, list(self.source_fits_.values()))
        else:
            self.calibrator = ProbabilityCalibrator(self.procedure.kind).fit(proba, y, sample_weight=weights)
        calibrated = self.calibrator.predict_proba(proba)
        w = weights / weights.sum()
        self.train_prior = np.bincount(y, weights=w, minlength=3)
        self.confusion = (calibrated * w[:, None]).T @ np.eye(3)[y]
        self.sources = sorted(set(np.asarray(source).astype(str)))
        return self

    def predict_proba(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated, then (``label_shift``) re-weighted to the batch's estimated class prior."""
        if self.calibrator is None or self.train_prior is None:
            raise ValueError("NewSourceCalibrator is not fitted")
        calibrated = self.calibrator.predict_proba(proba)
        weights = label_shift_weights(self.procedure.label_shift, calibrated, self.train_prior, self.confusion)
        return reweight(calibrated, weights)

    def to_dict(self) -> dict:
        if self.calibrator is None or self.train_prior is None or self.confusion is None:
            raise ValueError("NewSourceCalibrator is not fitted")
        return {
            "procedure": asdict(self.procedure),
            "calibrator": self.calibrator.to_dict(),
            "train_prior": self.train_prior.tolist(),
            "confusion": self.confusion.tolist(),
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict) -> NewSourceCalibrator:
        """The inverse of :meth:`to_dict`, refusing values a fit cannot have produced (an edited file)."""
        out = cls(
            NewSourceProcedure(**data["procedure"]),
            ProbabilityCalibrator.from_dict(data["calibrator"]),
            np.asarray(data["train_prior"], dtype=np.float64),
            np.asarray(data["confusion"], dtype=np.float64),
            [str(s) for s in data["sources"]],
        )
        out.check()
        return out

    def check(self) -> None:
        """ValueError unless the stored values are a possible fit: a distribution prior, a joint matrix."""
        assert self.calibrator is not None and self.train_prior is not None and self.confusion is not None
        self.calibrator.check()
        if self.calibrator.kind != self.procedure.kind:
            raise ValueError(f"new-source calibrator kind {self.calibrator.kind!r} != {self.procedure.kind!r}")
        prior, joint = self.train_prior, self.confusion
        if prior.shape != (3,) or not np.isfinite(prior).all() or (prior < 0).any() or abs(prior.sum() - 1) > 1e-6:
            raise ValueError(f"new-source train prior must be 3 probabilities summing to 1, got {prior.tolist()}")
        if joint.shape != (3, 3) or not np.isfinite(joint).all() or (joint < 0).any() or abs(joint.sum() - 1) > 1e-6:
            raise ValueError("new-source confusion must be a 3x3 joint distribution (non-negative, sums to 1)")
        if not np.allclose(joint.sum(axis=0), prior, atol=1e-6):
            raise ValueError("new-source confusion's label margins differ from its train prior")
        if len(self.sources) < 2:
            raise ValueError(f"new-source calibration needs >= 2 held-out sources, got {self.sources}")
