"""The shared first half of every entry point: fold, featurise, attach extra sources; training rows only.

:func:`build_inputs` works on frames already parsed; the estimator's fit (``pipelines.model.fitting.training_inputs``)
is its one caller, and the experiments get their inputs from it (``pipelines.model.model_inputs``).
:meth:`StackerInputs.fit_kwargs` is the one builder of ``fit_calibrated``'s arguments besides the data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.extractor import FeatureExtractor
from pipelines.config.run_config import RunConfig, SourceFiles
from pipelines.data.battles import DataError
from pipelines.data.folds import ACROSS_SOURCES, check_labels, load_or_make_folds, make_folds, prompt_groups
from pipelines.data.run_sources import is_multi_source
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.tables import read_proba_file
from pipelines.runtime.stage_timer import StageTimer
from stacking.cross_fit import FoldFeature
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.sources import source_features

log = logging.getLogger(__name__)

SOURCE_COLUMNS = ("source", "is_primary", "weight", "source_has_ties")  # pipelines.data.training_sets' extra columns


@dataclass
class StackerInputs:
    """Training battles, labels, folds, fold groups and the stacker's feature frame. No test rows: the fit never
    sees them (they are scored after it, ``pipelines.model.scoring``).

    ``source``, ``is_primary``, ``weight`` and ``source_has_ties`` are per train row when the train
    frame came from several training sources (``pipelines.data.training_sets``), else None.
    """

    train: pd.DataFrame
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray
    X: pd.DataFrame
    source: np.ndarray | None = None
    is_primary: np.ndarray | None = None
    weight: np.ndarray | None = None
    source_has_ties: np.ndarray | None = None

    def with_source(self, name: str, oof_path: str | Path) -> None:
        """Add a probability source's columns: its out-of-fold probabilities of the train rows."""
        self.X = pd.concat([self.X, source_columns(name, oof_path, self.train)], axis=1)

    def fit_kwargs(
        self, fold_features: Sequence[FoldFeature] = (), fold_cache: FoldFeatureCache | None = None
    ) -> dict[str, Any]:
        """What :func:`stacking.cross_fit.fit_calibrated` gets besides X, y, folds, config and seed: the fold
        groups, the training sources' weights, tie flags, scored rows and names (none for one source), and the
        fold features with the battles they read (and ``fold_cache``). The one builder of these arguments: the
        run's stackers, the new-source calibrator and the experiments all fit through it."""
        kwargs: dict[str, Any] = {"groups": self.groups, **source_fit_kwargs(self.train)}
        if fold_features:
            kwargs.update(fold_features=list(fold_features), battles=self.train)
            if fold_cache is not None:
                kwargs["fold_cache"] = fold_cache
        return kwargs


def source_fit_kwargs(battles: pd.DataFrame) -> dict[str, np.ndarray]:
    """``sample_weight``, ``tieless``, ``scored`` and ``source`` for :func:`stacking.cross_fit.fit_calibrated`
    from a :func:`pipelines.data.training_sets.load_training_sources` frame; ``{}`` for a plain train set,
    so a single-source run keeps today's path exactly.

    Why: extra sources only train. Folds are made over *all* rows (``pipelines.data.source_folds``), so a prompt
    in the primary's fold k is never trained on through an extra set; calibration and OOF metrics use the primary
    rows only (``scored``)."""
    if "source" not in battles or "is_primary" not in battles:
        return {}
    return {
        "sample_weight": battles["weight"].to_numpy(dtype=np.float64),
        "tieless": ~battles["source_has_ties"].to_numpy(dtype=bool),
        "scored": battles["is_primary"].to_numpy(dtype=bool),
        "source": battles["source"].to_numpy().astype(str),
    }


def source_columns(name: str, path: str | Path, battles: pd.DataFrame) -> pd.DataFrame:
    """A probability source's stacker columns for ``battles`` (in their order) from its file; a file that
    lacks some of the ids is a :class:`DataError` naming the file and the ids."""
    try:
        return source_features(read_proba_file(path), battles["id"], name, str(path))
    except DataError:
        raise
    except ValueError as exc:  # stacking.sources: ids without probabilities
        raise DataError(str(exc)) from None


def cache_dir_of(config: RunConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else config.out.parent / ".cache"


def build_inputs(
    train: pd.DataFrame,
    extractor: FeatureExtractor,
    *,
    n_folds: int,
    seed: int,
    folds_path: Path | None = None,
    extra_sources: Mapping[str, SourceFiles] | None = None,
    timer: StageTimer | None = None,
) -> StackerInputs:
    """Folds (saved to ``folds_path`` so other stages share them), features and extra sources' OOF columns of
    parsed training battles. A train frame of several sources (``pipelines.data.run_sources``) gets folds grouped
    by prompt or answer pair across all of them, so no pair is trained on through another source."""
    timer = timer or StageTimer()
    # read and matched to the ids before folds and features: a file missing ids costs no work
    sources = [source_columns(name, files.oof, train) for name, files in (extra_sources or {}).items()]
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
    meta = {c: train[c].to_numpy() for c in SOURCE_COLUMNS if c in train.columns}
    return StackerInputs(train, train["label"].to_numpy(), folds, groups, pd.concat([X, *sources], axis=1), **meta)


def source_fold_frame(battles: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """``id, fold`` over several sources (:func:`pipelines.data.source_folds.make_source_folds`), after
    the same label checks as single-source folds."""
    check_labels(battles, n_folds)
    return pd.DataFrame({"id": battles["id"].to_numpy(), "fold": make_source_folds(battles, n_folds, seed)})
