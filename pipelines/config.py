"""Every setting of a run, in one typed place. Paths come from arguments or discovery, never literals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from encoders.settings import EncoderConfig
from features.groups import GROUPS
from pipelines.resources import feature_workers
from pipelines.training_sets import TrainingSourcesConfig
from stacking.config import StackerConfig


@dataclass
class FeatureConfig:
    groups: tuple[str, ...] = tuple(GROUPS)
    n_jobs: int = field(default_factory=feature_workers)  # the cores this process may use
    chunk_size: int = 1000
    tfidf: bool = field(
        default=False,
        metadata={"help": "add the fold-fitted TF-IDF (A - B) SVD components (benchmarks/transformer_gain.py)"},
    )
    embedder: str | None = field(
        default=None,
        metadata={"help": "local sentence-embedding model folder: add fold-fitted embedding pair features"},
    )
    embedder_max_length: int = field(default=256, metadata={"help": "tokens per text for the embedder"})


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
    sources: TrainingSourcesConfig = field(default_factory=TrainingSourcesConfig)  # extra training sets
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stacker: StackerConfig = field(default_factory=StackerConfig)
    encoders: list[EncoderConfig] = field(default_factory=list)
    progress: bool = True
    time_budget_hours: float | None = None  # whole run; encoder folds that would overrun are not started
    allow_worse_than_prior: bool = False  # submit the stacker even when the class prior scores better
    test_calibration: str = "auto"  # auto | in-source | new-source (pipelines.new_source_stage)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """The inverse of :meth:`to_dict` (e.g. ``report.json["config"]``), so a run can be repeated."""
        data = dict(data)
        features = dict(data.pop("features", {}))
        if "groups" in features:
            features["groups"] = tuple(features["groups"])
        stacker = StackerConfig.from_dict(data.pop("stacker", {}))
        sources = dict(data.pop("sources", {}))
        sources["extra_train"] = tuple(sources.get("extra_train", ()))  # a JSON list after to_dict
        encoder_fields = {f.name for f in fields(EncoderConfig)}
        encoders = [
            EncoderConfig(**{k: v for k, v in e.items() if k in encoder_fields}) for e in data.pop("encoders", [])
        ]
        return cls(
            **data,
            features=FeatureConfig(**features),
            stacker=stacker,
            encoders=encoders,
            sources=TrainingSourcesConfig(**sources),
        )

    @property
    def out(self) -> Path:
        return Path(self.out_dir)


def load_params_file(path: str | Path) -> dict:
    """Best parameters from ``pipelines.tune``: ``{"params": {...}, "calibration": "..."}``."""
    data = json.loads(Path(path).read_text())
    if "params" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'params' key (written by pipelines.tune)")
    return data
