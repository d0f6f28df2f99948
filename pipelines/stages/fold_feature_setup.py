"""Fold features from a :class:`FeatureConfig`: which transformers, and the battles they read.

Why one helper: training and prediction must build the same inputs. The cross-fit needs the
unfitted transformers (it clones and fits them per fold) and battles frames that carry what they
read (``emb_*`` columns when an embedder is configured); prediction needs the same columns on new
battles, from the settings recorded in the run's config. What each kind needs is its registered
class (:mod:`pipelines.stages.fold_feature_kinds`); this module only walks the kinds a config asks for.

    transformers, battles = build_fold_features(config.features, train, cache_dir)
    fit_calibrated(X, y, folds, stacker, seed, fold_features=transformers, battles=battles)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config.run_config import FeatureConfig
from pipelines.stages.fold_feature_kinds import FoldFeatureKind, Preparer, kind_of, kinds


def wanted_kinds(features: FeatureConfig) -> list[type[FoldFeatureKind]]:
    """The registered kinds ``features`` switches on, in column order."""
    return [kind for kind in kinds() if kind.wanted(features)]


def fold_transformers(features: FeatureConfig) -> list[Any]:
    """The unfitted fold transformers ``features`` asks for (empty: features only)."""
    return [kind.build(features) for kind in wanted_kinds(features)]


def fold_feature_name(transformer: Any) -> str:
    """A fold transformer's short name in reports and ablation groups: its kind's name, else its class's."""
    kind = kind_of(transformer)
    return kind.name if kind is not None else type(transformer).__name__


def _preparers(features: FeatureConfig, cache_dir: str | Path | None) -> list[Preparer]:
    made = (kind.preparer(features, cache_dir) for kind in wanted_kinds(features))
    return [p for p in made if p is not None]


def _prepared(preparers: list[Preparer], battles: pd.DataFrame) -> pd.DataFrame:
    for prepare in preparers:
        battles = prepare(battles)
    return battles


def prepare_battles(
    features: FeatureConfig, battles: pd.DataFrame, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """``battles`` with the columns the fold transformers read joined on (the same frame when none needs
    any). Used for train, test and, at predict time, new battles."""
    return _prepared(_preparers(features, cache_dir), battles)


def build_fold_features(
    features: FeatureConfig, train: pd.DataFrame, cache_dir: str | Path | None = None
) -> tuple[list[Any], pd.DataFrame]:
    """(unfitted transformers, train battles): ``fit_calibrated``'s ``fold_features=`` and ``battles=``.
    Rows to score later are prepared the same way by :func:`prepare_battles`."""
    return fold_transformers(features), prepare_battles(features, train, cache_dir)
