"""Fold features from a :class:`FeatureConfig`: which transformers, and the battles they read.

Why one helper: training and prediction must build the same inputs. The cross-fit needs the
unfitted transformers (it clones and fits them per fold) and battles frames that carry what they
read (``emb_*`` columns when an embedder is configured); prediction needs the same embedding
columns on new battles, from the embedder recorded in the run's config. Embeddings are frozen
(no labels), so embedding every row once is leak-free; vectors are cached under the run's cache
directory by content hash, so a rerun or the predict step never recomputes them.

    transformers, battles, test_battles = build_fold_features(config.features, train, test, cache_dir)
    fit_calibrated(X, y, folds, stacker, seed, fold_features=transformers,
                   battles=battles, test_battles=test_battles)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.embedding_features import EmbeddingPairFeatures
from features.text_vectors import TfidfDiffTransformer
from pipelines.stages.config import FeatureConfig

EMBED_CACHE = "embeddings"  # subfolder of the run's cache dir
FOLD_FEATURE_CLASSES: dict[str, Any] = {c.__name__: c for c in (TfidfDiffTransformer, EmbeddingPairFeatures)}
# fp32 everywhere: the vectors a model was trained on and those it predicts from must match, on any device
EMBED_PRECISION = "fp32"


def fold_transformers(features: FeatureConfig) -> list[Any]:
    """The unfitted fold transformers ``features`` asks for (empty: features only)."""
    out: list[Any] = []
    if features.tfidf:
        out.append(TfidfDiffTransformer())
    if features.embedder:
        out.append(EmbeddingPairFeatures(conversation=False))
    return out


def fold_feature_name(transformer: Any) -> str:
    """A fold transformer's short name in reports and ablation groups: ``tfidf``, ``embedding`` or its class."""
    names = {"TfidfDiffTransformer": "tfidf", "EmbeddingPairFeatures": "embedding"}
    return names.get(type(transformer).__name__, type(transformer).__name__)


def make_embedder(features: FeatureConfig, cache_dir: str | Path | None = None):
    """The configured :class:`encoders.embedder.TextEmbedder` (torch is imported only here)."""
    from encoders.embedder import TextEmbedder

    if not features.embedder:
        raise ValueError("no embedder configured (FeatureConfig.embedder)")
    cache = None if cache_dir is None else Path(cache_dir) / EMBED_CACHE
    return TextEmbedder(
        features.embedder, max_length=features.embedder_max_length, precision=EMBED_PRECISION, cache_dir=cache
    )


def prepare_battles(
    features: FeatureConfig, battles: pd.DataFrame, cache_dir: str | Path | None = None, embedder: Any = None
) -> pd.DataFrame:
    """``battles`` with the columns the fold transformers read joined on (unchanged without an
    embedder). Used for train, test and, at predict time, new battles."""
    if not features.embedder:
        return battles
    from encoders.embedder import embed_battles

    embedder = embedder if embedder is not None else make_embedder(features, cache_dir)
    return battles.join(embed_battles(embedder, battles))


def build_fold_features(
    features: FeatureConfig,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    cache_dir: str | Path | None = None,
) -> tuple[list[Any], pd.DataFrame, pd.DataFrame | None]:
    """(unfitted transformers, train battles, test battles) for ``fit_calibrated``'s
    ``fold_features=``, ``battles=`` and ``test_battles=``; one embedder serves both frames."""
    transformers = fold_transformers(features)
    embedder = make_embedder(features, cache_dir) if features.embedder else None
    train = prepare_battles(features, train, cache_dir, embedder)
    test = None if test is None else prepare_battles(features, test, cache_dir, embedder)
    return transformers, train, test


def restore_fold_feature(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """A fitted fold transformer back from its ``get_state()`` (the bundle's JSON + npz)."""
    name = meta.get("class")
    if name not in FOLD_FEATURE_CLASSES:
        raise ValueError(f"unknown fold feature {name!r}; expected one of {sorted(FOLD_FEATURE_CLASSES)}")
    return FOLD_FEATURE_CLASSES[name].from_state(meta, arrays)
