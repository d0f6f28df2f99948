"""A trained stacker as a directory: fold boosters, each fold's feature transformers, calibrator, config.

Loading it needs no training data, so new battles can be scored later. Nothing is unpickled: boosters
are LightGBM text (their header checked before LightGBM reads them), transformers JSON + ``.npz``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from stacking.booster_file import check_booster_file
from stacking.calibration import ProbabilityCalibrator
from stacking.cross_fit import with_fold_features
from stacking.lgbm import LGBMStacker, predict_swap_averaged
from stacking.new_source import NewSourceCalibrator
from stacking.tie_handling import TieAwareStacker, is_savable
from stacking.tie_registry import choices
from stacking.transformer_state import load_transformer, save_transformer


def check_savable_tie_handling(tie_handling: str) -> None:
    """ValueError for a tie handling a saved model cannot reproduce (call it before training): one that
    predicts with more than one booster or an extra input column (``TieHandling.savable``)."""
    if not is_savable(tie_handling):
        savable = ", ".join(name for name in choices() if is_savable(name))
        raise ValueError(
            f"tie handling {tie_handling!r} cannot be saved as a model (it predicts with two boosters or an"
            f" extra input column); use one of {savable}"
        )


FORMAT_VERSION = 2
MODEL_FILE = "model.json"


def booster_name(i: int) -> str:
    return f"booster_{i}.txt"


def transformer_stem(directory: Path, fold: int, j: int) -> Path:
    return directory / f"fold_{fold}" / f"transformer_{j}"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    packages = ("numpy", "pandas", "lightgbm", "scikit-learn", "textstat", "optuna", "torch", "transformers", "peft")
    for pkg in (*packages, "vaderSentiment", "pyspellchecker"):  # the last two: opt-in feature groups
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class StackerModel:
    """Fold boosters (predictions are their mean) followed by a calibrator.

    ``calibrator`` is fitted on the training sources' out-of-fold rows (in-source); ``new_source``, when
    the training data had several tie-bearing sources, on their leave-one-source-out predictions.
    ``fold_transformers[k]`` are fold k's fitted per-fold feature transformers: booster k only ever
    sees the columns its own fold's transformers produce, at fit and at prediction.
    """

    boosters: list[lgb.Booster]
    columns: list[str]
    calibrator: ProbabilityCalibrator
    feature_config: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    fold_transformers: list[list[Any]] = field(default_factory=list)
    new_source: NewSourceCalibrator | None = None

    @classmethod
    def from_fold_models(
        cls,
        models: list[LGBMStacker] | list[TieAwareStacker],
        calibrator: ProbabilityCalibrator,
        feature_config: dict,
        metadata: dict | None = None,
        fold_transformers: list[list[Any]] | None = None,
    ) -> StackerModel:
        """One booster per fold: an ``LGBMStacker``'s, or a ``TieAwareStacker``'s single booster (its tie
        offsets are init scores at training only, so prediction is the booster's plain output)."""
        for m in models:
            if isinstance(m, TieAwareStacker):
                check_savable_tie_handling(m.option)
        columns = list(models[0].columns_)
        if any(list(m.columns_) != columns for m in models):
            raise ValueError("fold stackers differ in their columns: per-fold features must name the same columns")
        transformers = [list(t) for t in fold_transformers or []]
        if transformers and len(transformers) != len(models):
            raise ValueError(f"{len(transformers)} sets of fold transformers for {len(models)} fold stackers")
        boosters = [m.fitted_booster() for m in models]
        return cls(boosters, columns, calibrator, feature_config, metadata or {}, transformers)

    @property
    def needs_battles(self) -> bool:
        return any(self.fold_transformers)

    def predict_proba_uncalibrated(self, X: pd.DataFrame, battles: pd.DataFrame | None = None) -> np.ndarray:
        """Mean over folds; booster k sees ``X`` plus its own fold's transformer columns of ``battles``."""
        per_fold = []
        for k, booster in enumerate(self.boosters):
            fitted = self.fold_transformers[k] if self.fold_transformers else []
            per_fold.append(predict_swap_averaged(booster, with_fold_features(X, battles, fitted), self.columns))
        return np.mean(per_fold, axis=0)

    def predict_proba(
        self, X: pd.DataFrame, battles: pd.DataFrame | None = None, *, new_source: bool = False
    ) -> np.ndarray:
        """Calibrated probabilities: in-source (default) or, with ``new_source``, the new-source calibrator."""
        return self.calibrate(self.predict_proba_uncalibrated(X, battles), new_source)

    def calibrate(self, raw: np.ndarray, new_source: bool = False) -> np.ndarray:
        if not new_source:
            return self.calibrator.predict_proba(raw)
        if self.new_source is None:
            raise ValueError("this stacker has no new-source calibrator (trained on a single tie-bearing source)")
        return self.new_source.predict_proba(raw)

    def save(self, directory: str | Path) -> list[Path]:
        """Write the model into ``directory``; every file written (for a bundle's hashes)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for i, booster in enumerate(self.boosters):
            path = directory / booster_name(i)
            # the text save_model writes, written by Python: a full disk is an OSError (ENOSPC) that callers
            # turn into one line, not a LightGBMError that only says "Cannot write"
            path.write_bytes(booster.model_to_string(num_iteration=booster.best_iteration or None).encode())
            written.append(path)
        transformers: list[list[str]] = []
        for k, fitted in enumerate(self.fold_transformers):
            transformers.append([])
            for j, t in enumerate(fitted):
                stem = transformer_stem(directory, k, j)
                written += save_transformer(t, stem)
                transformers[-1].append(str(stem.relative_to(directory)))
        manifest = {
            "format_version": FORMAT_VERSION,
            "n_boosters": len(self.boosters),
            "columns": self.columns,
            "calibrator": self.calibrator.to_dict(),
            "new_source_calibrator": None if self.new_source is None else self.new_source.to_dict(),
            "feature_config": self.feature_config,
            "metadata": self.metadata,
            "fold_transformers": transformers,
            "versions": library_versions(),
        }
        (directory / MODEL_FILE).write_text(json.dumps(manifest, indent=2))
        return [directory / MODEL_FILE, *written]

    @classmethod
    def load(cls, directory: str | Path) -> StackerModel:
        """Load and check: booster files named in ``model.json`` (no more, no fewer), their headers'
        feature names against ``columns``, the calibrator's values; ValueError names the file."""
        directory = Path(directory)
        manifest_path = directory / MODEL_FILE
        if not manifest_path.exists():
            raise FileNotFoundError(f"{directory}: not a saved stacker (no {MODEL_FILE})")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}")
        n = int(manifest["n_boosters"])
        found = sorted(p.name for p in directory.glob("booster_*.txt"))
        expected = sorted(booster_name(i) for i in range(n))
        best = manifest.get("metadata", {}).get("best_iterations")
        if n < 1 or found != expected or (best is not None and len(best) != n):
            raise ValueError(f"{manifest_path}: n_boosters {n} does not match the booster files {found}")
        try:
            calibrator = ProbabilityCalibrator.from_dict(manifest["calibrator"])
            stored = manifest.get("new_source_calibrator")
            new_source = None if stored is None else NewSourceCalibrator.from_dict(stored)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: {exc}") from None
        columns = [str(c) for c in manifest["columns"]]
        for i in range(n):
            check_booster_file(directory / booster_name(i), columns)  # before LightGBM reads it
        boosters = [lgb.Booster(model_file=str(directory / booster_name(i))) for i in range(n)]
        stems = manifest.get("fold_transformers", [])
        if stems and len(stems) != n:
            raise ValueError(f"{manifest_path}: {len(stems)} sets of fold transformers for {n} boosters")
        transformers = [[load_transformer(directory / stem) for stem in fold] for fold in stems]
        return cls(
            boosters,
            columns,
            calibrator,
            manifest["feature_config"],
            manifest.get("metadata", {}),
            transformers,
            new_source,
        )
