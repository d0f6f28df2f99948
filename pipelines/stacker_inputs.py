"""The shared first half of every entry point: load, fold, featurise, attach extra sources."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.extractor import FeatureExtractor
from pipelines.config import RunConfig
from pipelines.data import ParseReport, load_battles
from pipelines.folds import load_or_make_folds, prompt_groups
from pipelines.report import StageTimer
from stacking.sources import read_proba_file, source_features

log = logging.getLogger(__name__)


@dataclass
class StackerInputs:
    train: pd.DataFrame
    test: pd.DataFrame
    train_parse: ParseReport
    test_parse: ParseReport
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray
    X: pd.DataFrame
    X_test: pd.DataFrame

    def with_source(self, name: str, oof_path: str | Path, test_path: str | Path) -> None:
        """Add an extra probability source's columns (OOF for train, fold-mean for test)."""
        self.X = pd.concat(
            [self.X, source_features(read_proba_file(oof_path), self.train["id"], name, str(oof_path))], axis=1
        )
        self.X_test = pd.concat(
            [self.X_test, source_features(read_proba_file(test_path), self.test["id"], name, str(test_path))], axis=1
        )


def cache_dir_of(config: RunConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else config.out.parent / ".cache"


def prepare_inputs(config: RunConfig, timer: StageTimer | None = None) -> StackerInputs:
    timer = timer or StageTimer()
    with timer.stage("load"):
        train, train_parse = load_battles(config.train_path, labelled=True)
        test, test_parse = load_battles(config.test_path, labelled=False)
    with timer.stage("folds"):
        folds = load_or_make_folds(train, config.out / "folds.csv", config.n_folds, config.seed)["fold"].to_numpy()
        groups = prompt_groups(train)
    extractor = FeatureExtractor(
        config.features.groups,
        n_jobs=config.features.n_jobs,
        chunk_size=config.features.chunk_size,
        cache_dir=cache_dir_of(config),
        progress=config.progress,
    )
    with timer.stage("features"):
        X = extractor.transform(train)
        X_test = extractor.transform(test)
    inputs = StackerInputs(train, test, train_parse, test_parse, train["label"].to_numpy(), folds, groups, X, X_test)
    for name, spec in config.extra_sources.items():
        oof_path, test_path = spec.split(",")
        inputs.with_source(name, oof_path, test_path)
    return inputs
