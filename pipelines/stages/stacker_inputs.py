"""The shared first half of every entry point: fold, featurise, attach extra sources.

:func:`build_inputs` works on frames already parsed; the estimator (``ArenaPreferenceModel.training_inputs``)
is its one caller, and the experiments get their inputs from it (``pipelines.model.model_inputs``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.extractor import FeatureExtractor
from pipelines.data.battles import DataError, ParseReport
from pipelines.data.folds import ACROSS_SOURCES, check_labels, load_or_make_folds, make_folds, prompt_groups
from pipelines.data.run_sources import is_multi_source
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.tables import read_proba_file
from pipelines.runtime.stage_timer import StageTimer
from pipelines.stages.config import RunConfig
from stacking.sources import source_features

log = logging.getLogger(__name__)

SOURCE_COLUMNS = ("source", "is_primary", "weight", "source_has_ties")  # pipelines.data.training_sets' extra columns


@dataclass
class StackerInputs:
    """Train (and optional test) battles, labels, folds and stacker feature frames.

    ``source``, ``is_primary``, ``weight`` and ``source_has_ties`` are per train row when the train
    frame came from several training sources (``pipelines.data.training_sets``), else None.
    """

    train: pd.DataFrame
    test: pd.DataFrame | None
    train_parse: ParseReport
    test_parse: ParseReport | None
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray
    X: pd.DataFrame
    X_test: pd.DataFrame | None
    source: np.ndarray | None = None
    is_primary: np.ndarray | None = None
    weight: np.ndarray | None = None
    source_has_ties: np.ndarray | None = None

    def with_source(self, name: str, oof_path: str | Path, test_path: str | Path | None) -> None:
        """Add an extra probability source's columns (OOF for train, fold-mean for test)."""
        test = self.test if self.X_test is not None and test_path is not None else None
        self.add_source_columns(*source_columns(name, oof_path, test_path, self.train, test))

    def add_source_columns(self, train_columns: pd.DataFrame, test_columns: pd.DataFrame | None) -> None:
        self.X = pd.concat([self.X, train_columns], axis=1)
        if self.X_test is not None and test_columns is not None:
            self.X_test = pd.concat([self.X_test, test_columns], axis=1)


def source_columns(
    name: str, oof_path: str | Path, test_path: str | Path | None, train: pd.DataFrame, test: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A probability source's stacker columns for the train rows (OOF file) and the test rows; a file that
    lacks some of the ids is a :class:`DataError` naming the file and the ids."""

    def aligned(path: str | Path, ids: pd.Series) -> pd.DataFrame:
        try:
            return source_features(read_proba_file(path), ids, name, str(path))
        except DataError:
            raise
        except ValueError as exc:  # stacking.sources: ids without probabilities
            raise DataError(str(exc)) from None

    return aligned(oof_path, train["id"]), None if test is None or test_path is None else aligned(test_path, test["id"])


def cache_dir_of(config: RunConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else config.out.parent / ".cache"


def build_inputs(
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    train_parse: ParseReport,
    test_parse: ParseReport | None,
    extractor: FeatureExtractor,
    *,
    n_folds: int,
    seed: int,
    folds_path: Path | None = None,
    extra_sources: dict[str, str] | None = None,
    timer: StageTimer | None = None,
) -> StackerInputs:
    """Folds (saved to ``folds_path`` so other stages share them), features and extra sources of parsed
    battles. A train frame of several sources (``pipelines.data.run_sources``) gets folds grouped by prompt
    or answer pair across all of them, so no pair is trained on through another source."""
    timer = timer or StageTimer()
    sources = {}  # read and matched to the ids before folds and features: a file missing ids costs no work
    for name, spec in (extra_sources or {}).items():
        oof_path, test_path = spec.split(",")
        sources[name] = source_columns(name, oof_path, test_path, train, test)
    with timer.stage("folds"):
        several = is_multi_source(train)
        maker = source_fold_frame if several else make_folds
        if folds_path is not None:
            grouping = {"grouping": ACROSS_SOURCES} if several else {}
            folds = load_or_make_folds(train, folds_path, n_folds, seed, maker, **grouping)["fold"].to_numpy()
        else:
            folds = maker(train, n_folds, seed)["fold"].to_numpy()
        groups = source_groups(train) if several else prompt_groups(train)
    with timer.stage("features"):
        X = extractor.transform(train)
        X_test = extractor.transform(test) if test is not None else None
    meta = {c: train[c].to_numpy() for c in SOURCE_COLUMNS if c in train.columns}
    inputs = StackerInputs(
        train, test, train_parse, test_parse, train["label"].to_numpy(), folds, groups, X, X_test, **meta
    )
    for train_columns, test_columns in sources.values():
        inputs.add_source_columns(train_columns, test_columns)
    return inputs


def source_fold_frame(battles: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """``id, fold`` over several sources (:func:`pipelines.data.source_folds.make_source_folds`), after
    the same label checks as single-source folds."""
    check_labels(battles, n_folds)
    return pd.DataFrame({"id": battles["id"].to_numpy(), "fold": make_source_folds(battles, n_folds, seed)})
