"""Post-hoc calibration of 3-class probabilities, kept symmetric in A and B.

Temperature scaling (one T), a swap-symmetric vector scaling (T plus a bias on the tie
logit: a free bias on A or B would break p(A|A,B) == p(B|B,A)), or smoothing toward the
uniform guess, ``(1 - eps) * p + eps / 3``: a share ``eps`` of the votes behaves like a coin toss
the model cannot foresee (other annotators), which caps the loss of a confident miss at
``log(3 / eps)``. ``cross_calibrate`` fits on
out-of-fold predictions nested across folds, so the reported after-calibration loss never
comes from a calibrator that saw the rows it scores.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax

from arena_schema import TIE
from stacking.config import CALIBRATIONS

EPS = 1e-7
LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)  # the fit's search range; a stored value outside it was not fitted here
TIE_BIAS_BOUNDS = (-5.0, 5.0)
SMOOTHING_BOUNDS = (0.0, 0.9)  # eps = 1 would throw the model away


def _logits(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0))


class ProbabilityCalibrator:
    """softmax(log(p) / T + [0, 0, tie_bias]), then mixed with the uniform guess by ``smoothing``.

    ``kind``: "none", "temperature" (T), "vector" (T and the tie bias) or "smoothing" (eps only).
    """

    KINDS = CALIBRATIONS

    def __init__(self, kind: str = "temperature"):
        if kind not in self.KINDS:
            raise ValueError(f"calibration kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.temperature_ = 1.0
        self.tie_bias_ = 0.0
        self.smoothing_ = 0.0

    def _transform_logits(self, logits: np.ndarray, temperature: float, tie_bias: float) -> np.ndarray:
        out = logits / temperature
        out[:, TIE] += tie_bias
        return out

    def fit(self, proba: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> ProbabilityCalibrator:
        """Minimise the (weighted) mean negative log likelihood of ``y`` over T (and the tie bias)."""
        if self.kind == "none":
            return self
        if self.kind == "smoothing":
            return self._fit_smoothing(np.asarray(proba, dtype=np.float64), np.asarray(y), sample_weight)
        logits = _logits(proba)
        y = np.asarray(y)
        rows = np.arange(len(y))
        weights = _normalised_weights(sample_weight, len(y))

        def nll(theta: np.ndarray) -> float:
            temperature = float(np.exp(theta[0]))
            bias = float(theta[1]) if self.kind == "vector" else 0.0
            return -float(log_softmax(self._transform_logits(logits, temperature, bias), axis=1)[rows, y] @ weights)

        x0 = np.zeros(2 if self.kind == "vector" else 1)
        result = minimize(
            nll,
            x0,
            method="L-BFGS-B",
            bounds=[LOG_TEMPERATURE_BOUNDS] + ([TIE_BIAS_BOUNDS] if self.kind == "vector" else []),
        )
        self.temperature_ = float(np.exp(result.x[0]))
        self.tie_bias_ = float(result.x[1]) if self.kind == "vector" else 0.0
        return self

    def _fit_smoothing(
        self, proba: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None
    ) -> ProbabilityCalibrator:
        """eps by bounded 1-D search: the loss is convex in eps (the log of a function linear in it)."""
        weights = _normalised_weights(sample_weight, len(y))
        p_true = np.clip(proba[np.arange(len(y)), y], 0.0, 1.0)

        def nll(eps: float) -> float:
            return -float(np.log((1.0 - eps) * p_true + eps / 3.0 + 1e-300) @ weights)

        self.smoothing_ = float(minimize_scalar(nll, bounds=SMOOTHING_BOUNDS, method="bounded").x)
        return self

    def predict_proba(self, proba: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return np.asarray(proba, dtype=np.float64)
        if self.kind == "smoothing":
            proba = np.asarray(proba, dtype=np.float64)
            proba = proba / proba.sum(axis=1, keepdims=True)
            return (1.0 - self.smoothing_) * proba + self.smoothing_ / proba.shape[1]
        return softmax(self._transform_logits(_logits(proba), self.temperature_, self.tie_bias_), axis=1)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "temperature": self.temperature_,
            "tie_bias": self.tie_bias_,
            "smoothing": self.smoothing_,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ProbabilityCalibrator:
        """The inverse of :meth:`to_dict`, refusing values the fit cannot have produced (an edited file)."""
        cal = cls(data["kind"])
        cal.temperature_ = float(data["temperature"])
        cal.tie_bias_ = float(data["tie_bias"])
        cal.smoothing_ = float(data.get("smoothing", 0.0))  # bundles written before the kind existed lack it
        cal.check()
        return cal

    def check(self) -> None:
        """Raise ValueError unless temperature, tie bias and smoothing are finite, inside the fit's bounds
        and zero (one) where the kind does not fit them."""
        t, bias, eps = self.temperature_, self.tie_bias_, self.smoothing_
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"calibrator temperature must be finite and > 0, got {t}")
        low, high = (float(np.exp(b)) for b in LOG_TEMPERATURE_BOUNDS)
        if not low * (1 - 1e-9) <= t <= high * (1 + 1e-9):
            raise ValueError(f"calibrator temperature {t} is outside the fitted range [{low:.4g}, {high:.4g}]")
        if not np.isfinite(bias) or not TIE_BIAS_BOUNDS[0] <= bias <= TIE_BIAS_BOUNDS[1]:
            raise ValueError(f"calibrator tie bias must be finite and within {TIE_BIAS_BOUNDS}, got {bias}")
        if self.kind != "vector" and bias != 0.0:
            raise ValueError(f"calibrator of kind {self.kind!r} has a tie bias ({bias}); only 'vector' fits one")
        if self.kind in ("none", "smoothing") and t != 1.0:
            raise ValueError(f"calibrator of kind {self.kind!r} has temperature {t}; it must be 1")
        if not np.isfinite(eps) or not SMOOTHING_BOUNDS[0] <= eps <= SMOOTHING_BOUNDS[1]:
            raise ValueError(f"calibrator smoothing must be finite and within {SMOOTHING_BOUNDS}, got {eps}")
        if self.kind != "smoothing" and eps != 0.0:
            raise ValueError(f"calibrator of kind {self.kind!r} has smoothing {eps}; only 'smoothing' fits one")


def _normalised_weights(sample_weight: np.ndarray | None, rows: int) -> np.ndarray:
    weights = np.ones(rows) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (rows,) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("sample_weight must be one finite, non-negative weight per row, not all zero")
    return weights / weights.sum()


def cross_calibrate(
    oof: np.ndarray, y: np.ndarray, folds: np.ndarray, kind: str = "temperature"
) -> tuple[np.ndarray, ProbabilityCalibrator]:
    """Calibrated OOF (fold k scored by a calibrator fit on the other folds' OOF) and a final
    calibrator fit on all OOF rows, for test predictions."""
    y, folds = np.asarray(y), np.asarray(folds)
    calibrated = np.empty_like(oof, dtype=np.float64)
    for k in np.unique(folds):
        held = folds == k
        calibrated[held] = ProbabilityCalibrator(kind).fit(oof[~held], y[~held]).predict_proba(oof[held])
    return calibrated, ProbabilityCalibrator(kind).fit(oof, y)
