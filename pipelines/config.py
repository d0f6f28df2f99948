"""Every setting of a run, in one typed place. Paths come from arguments or discovery, never literals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from encoders.settings import EncoderConfig
from features.groups import GROUPS


@dataclass
class FeatureConfig:
    groups: tuple[str, ...] = tuple(GROUPS)
    n_jobs: int = 2
    chunk_size: int = 1000


@dataclass
class StackerConfig:
    params: dict = field(default_factory=dict)  # overrides of stacking.lgbm.DEFAULT_PARAMS
    num_boost_round: int = 3000
    early_stopping_rounds: int = 100
    inner_valid_fraction: float = 0.15
    swap_augment: bool = True
    calibration: str = "temperature"  # none | temperature | vector


@dataclass
class RunConfig:
    train_path: str
    test_path: str
    out_dir: str
    submission_path: str | None = None  # default: <out_dir>/submission.csv
    n_folds: int = 5
    seed: int = 42
    cache_dir: str | None = None  # default: <out_dir>/../.cache
    extra_sources: dict[str, str] = field(default_factory=dict)  # name -> "oof.parquet,test.parquet"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stacker: StackerConfig = field(default_factory=StackerConfig)
    encoders: list[EncoderConfig] = field(default_factory=list)
    progress: bool = True
    time_budget_hours: float | None = None  # whole run; encoder folds that would overrun are not started

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def out(self) -> Path:
        return Path(self.out_dir)


def load_params_file(path: str | Path) -> dict:
    """Best parameters from ``pipelines.tune``: ``{"params": {...}, "calibration": "..."}``."""
    data = json.loads(Path(path).read_text())
    if "params" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'params' key (written by pipelines.tune)")
    return data
