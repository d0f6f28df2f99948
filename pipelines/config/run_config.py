"""Every setting of a run, in one typed place (``report.json`` -> ``config``, ``--config run.json``). Paths come from
arguments or discovery, never literals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from encoders.settings import EncoderConfig
from features.groups import DEFAULT_GROUPS
from pipelines.data.training_sets import TrainingSourcesConfig
from pipelines.runtime.config_file import RUN_LOCATION
from pipelines.runtime.resources import feature_workers
from stacking.calibration_choice import TestCalibration, validate_test_calibration
from stacking.config import StackerConfig

_OWN_OUTPUT = {RUN_LOCATION: True}  # where a run writes: a replay of its report.json writes elsewhere


@dataclass
class FeatureConfig:
    groups: tuple[str, ...] = DEFAULT_GROUPS  # features.groups.OPT_IN_GROUPS only when named
    n_jobs: int = field(default_factory=feature_workers)  # the cores this process may use
    tfidf: bool = field(
        default=False,
        metadata={"help": "add the fold-fitted TF-IDF (A - B) SVD components (benchmarks/transformer_gain.py)"},
    )
    embedder: str | None = field(
        default=None,
        metadata={"help": "local sentence-embedding model folder: add fold-fitted embedding pair features"},
    )
    embedder_max_length: int = field(default=256, metadata={"help": "tokens per text for the embedder"})

    RETIRED: ClassVar[tuple[str, ...]] = ("chunk_size",)  # keys of older report.json files, read and ignored


@dataclass(frozen=True)
class SourceFiles:
    """An extra probability source's files (``--source NAME=OOF,TEST``): its out-of-fold probabilities of the
    train rows and its probabilities of the test rows. Parsed once from ``"OOF,TEST"``, written back as that."""

    oof: str
    test: str

    @classmethod
    def parse(cls, spec: str | SourceFiles) -> SourceFiles:
        if isinstance(spec, SourceFiles):
            return spec
        files = str(spec).split(",")
        if len(files) != 2 or not all(f.strip() for f in files):
            raise ValueError(f"expected OOF,TEST (two files), got {spec!r}")
        return cls(*files)

    def __str__(self) -> str:
        return f"{self.oof},{self.test}"


@dataclass
class RunConfig:
    train_path: str
    test_path: str
    out_dir: str = field(metadata=_OWN_OUTPUT)
    submission_path: str | None = field(default=None, metadata=_OWN_OUTPUT)  # default: <out_dir>/submission.csv
    n_folds: int = 5
    seed: int = 42
    cache_dir: str | None = field(default=None, metadata=_OWN_OUTPUT)  # default: <out_dir>/../.cache
    extra_sources: dict[str, SourceFiles] = field(default_factory=dict)  # JSON: name -> "oof.parquet,test.parquet"
    sources: TrainingSourcesConfig = field(default_factory=TrainingSourcesConfig)  # extra training sets
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stacker: StackerConfig = field(default_factory=StackerConfig)
    encoders: list[EncoderConfig] = field(default_factory=list)
    progress: bool = True
    time_budget_hours: float | None = None  # whole run; encoder folds that would overrun are not started
    allow_worse_than_prior: bool = False  # submit the stacker even when the class prior scores better
    test_calibration: TestCalibration = "auto"  # stacking.calibration_choice

    def __post_init__(self) -> None:
        validate_test_calibration(self.test_calibration)
        sources = {}
        for name, spec in self.extra_sources.items():
            if not name:
                raise ValueError(f"extra source {spec!r}: no name (NAME=OOF,TEST)")
            try:
                sources[str(name)] = SourceFiles.parse(spec)
            except ValueError as exc:
                raise ValueError(f"extra source {name}: {exc}") from None
        self.extra_sources = sources

    def to_dict(self) -> dict:
        return {**asdict(self), "extra_sources": {name: str(files) for name, files in self.extra_sources.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """The inverse of :meth:`to_dict` (e.g. ``report.json["config"]``), so a run can be repeated."""
        data = dict(data)
        features = {k: v for k, v in data.pop("features", {}).items() if k not in FeatureConfig.RETIRED}
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
