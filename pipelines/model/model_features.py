"""What an estimator's parameters make of battles: the handcrafted feature extractor, the fold features and the
columns they read. One place, read by the fit (:mod:`pipelines.model.fitting`) and by scoring
(:mod:`pipelines.model.scoring`), so that training and prediction build the same inputs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.extractor import FeatureExtractor
from pipelines.bundle.model_bundle import feature_groups_of
from pipelines.config.run_config import FeatureConfig
from pipelines.stages.fold_feature_kinds import setting_names
from pipelines.stages.fold_feature_setup import fold_transformers, prepare_battles


def fold_feature_config(model: Any) -> FeatureConfig:
    """The fold-feature settings among ``model``'s parameters (every registered kind's, by name), as a run's
    config holds them."""
    return FeatureConfig(groups=feature_groups_of(model), **{name: getattr(model, name) for name in setting_names()})


def fold_features_of(model: Any) -> list[Any]:
    """The user's fold transformers plus those ``tfidf`` / ``embedder`` ask for (unfitted)."""
    return [*model.fold_features, *fold_transformers(fold_feature_config(model))]


def with_fold_feature_columns(model: Any, battles: pd.DataFrame) -> pd.DataFrame:
    """``battles`` with the columns the fold features read (``emb_*``: frozen embeddings, leak-free; unchanged
    without an embedder)."""
    return prepare_battles(fold_feature_config(model), battles, model.cache_dir)


def extractor_of(model: Any, cache: bool = True) -> FeatureExtractor:
    """The handcrafted feature extractor of ``model``'s groups (``cache``: under its ``cache_dir``)."""
    return FeatureExtractor(
        feature_groups_of(model),
        n_jobs=model.n_jobs or 1,
        cache_dir=model.cache_dir if cache else None,
        progress=model.progress,
    )
