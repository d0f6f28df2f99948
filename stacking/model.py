"""A trained stacker as a directory: fold boosters, calibrator, feature config, versions.

Loading it needs no training data, so ``pipelines.predict`` can score new battles later.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from stacking.calibration import ProbabilityCalibrator
from stacking.lgbm import LGBMStacker, predict_swap_averaged

FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "lightgbm", "scikit-learn", "textstat", "optuna", "torch", "transformers", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class StackerModel:
    """Fold boosters (predictions are their mean) followed by a calibrator."""

    boosters: list[lgb.Booster]
    columns: list[str]
    calibrator: ProbabilityCalibrator
    feature_config: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_fold_models(
        cls,
        models: list[LGBMStacker],
        calibrator: ProbabilityCalibrator,
        feature_config: dict,
        metadata: dict | None = None,
    ) -> StackerModel:
        return cls(
            [m.fitted_booster() for m in models], list(models[0].columns_), calibrator, feature_config, metadata or {}
        )

    def predict_proba_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([predict_swap_averaged(b, X, self.columns) for b in self.boosters], axis=0)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrator.predict_proba(self.predict_proba_uncalibrated(X))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for i, booster in enumerate(self.boosters):
            booster.save_model(str(directory / f"booster_{i}.txt"), num_iteration=booster.best_iteration or None)
        manifest = {
            "format_version": FORMAT_VERSION,
            "n_boosters": len(self.boosters),
            "columns": self.columns,
            "calibrator": self.calibrator.to_dict(),
            "feature_config": self.feature_config,
            "metadata": self.metadata,
            "versions": library_versions(),
        }
        (directory / "model.json").write_text(json.dumps(manifest, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> StackerModel:
        directory = Path(directory)
        manifest_path = directory / "model.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{directory}: not a saved stacker (no model.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}")
        boosters = [lgb.Booster(model_file=str(directory / f"booster_{i}.txt")) for i in range(manifest["n_boosters"])]
        return cls(
            boosters,
            manifest["columns"],
            ProbabilityCalibrator.from_dict(manifest["calibrator"]),
            manifest["feature_config"],
            manifest.get("metadata", {}),
        )
