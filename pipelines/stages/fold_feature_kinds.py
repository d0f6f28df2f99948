"""The fold-feature kinds by name: one class per kind, registered with ``@register``.

Why one record per kind: a kind (a ``features/`` transformer the cross-fit fits inside each training fold) is
switched on by its ``FeatureConfig`` settings (which give it its command-line flags), built from them, may need
columns joined onto the battles first (the embedder's ``emb_*``), is named in reports and ablation groups, and
its class must be allowed to load from a bundle. A new kind is one more class here with ``@register`` and its
settings as ``FeatureConfig`` fields. Importing ``pipelines.stages`` registers the built-in kinds, in the order
their columns follow the handcrafted ones (registration order is column order: keep it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pandas as pd

from features.embedding_features import EmbeddingPairFeatures
from features.text_vectors import TfidfDiffTransformer
from stacking.transformer_state import allow_transformer

if TYPE_CHECKING:
    from pipelines.config.run_config import FeatureConfig

EMBED_CACHE = "embeddings"  # subfolder of the run's cache dir
# fp32 everywhere: the vectors a model was trained on and those it predicts from must match, on any device
EMBED_PRECISION = "fp32"

Preparer = Callable[[pd.DataFrame], pd.DataFrame]
K = TypeVar("K", bound="type[FoldFeatureKind]")


class FoldFeatureKind:
    """One kind: its ``transformer`` class (with ``get_state``/``from_state``) and the ``FeatureConfig``
    fields it owns (``settings``; the first one switches it on). A subclass overrides what differs."""

    name: ClassVar[str] = ""  # in reports and ablation groups (``fold:<name>``)
    transformer: ClassVar[type[Any]]
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def wanted(cls, features: FeatureConfig) -> bool:
        return bool(getattr(features, cls.settings[0]))

    @classmethod
    def build(cls, features: FeatureConfig) -> Any:
        """The unfitted transformer (the cross-fit clones and fits it per fold)."""
        return cls.transformer()

    @classmethod
    def preparer(cls, features: FeatureConfig, cache_dir: str | Path | None) -> Preparer | None:
        """What joins the columns the transformer reads onto a battles frame (None: it reads parsed battles)."""
        return None


REGISTRY: dict[str, type[FoldFeatureKind]] = {}


def register(cls: K) -> K:
    """Class decorator: make the kind ``cls.name`` buildable from a config, named in reports, loadable from bundles."""
    name, settings = cls.name, cls.settings
    if not isinstance(name, str) or not name or not settings:
        raise ValueError(f"a fold-feature kind needs a name and at least one setting, got {name!r}, {settings!r}")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"fold-feature kind {name!r} is registered twice")
    taken = {s: k.name for k in REGISTRY.values() if k is not cls for s in k.settings}
    if any(s in taken for s in settings):
        raise ValueError(f"fold-feature kind {name!r}: settings {settings} overlap {taken}")
    allow_transformer(cls.transformer)
    REGISTRY[name] = cls
    return cls


def kinds() -> tuple[type[FoldFeatureKind], ...]:
    """The registered kinds, in registration (= column) order."""
    return tuple(REGISTRY.values())


def setting_names() -> tuple[str, ...]:
    """Every kind's ``FeatureConfig`` fields, in order: the fold-feature flags of the commands."""
    return tuple(s for kind in kinds() for s in kind.settings)


def kind_of(transformer: Any) -> type[FoldFeatureKind] | None:
    """The registered kind whose class ``transformer`` is (None: a user's own transformer)."""
    return next((k for k in kinds() if type(transformer) is k.transformer), None)


@register
class Tfidf(FoldFeatureKind):
    """TF-IDF of answer A minus answer B, SVD components fitted per fold (``--tfidf``)."""

    name = "tfidf"
    transformer = TfidfDiffTransformer
    settings = ("tfidf",)


@register
class Embedding(FoldFeatureKind):
    """Sentence embeddings of prompt and answers, (A - B) projected per fold (``--embedder MODEL_DIR``).

    Embeddings are frozen (no labels), so embedding every row once is leak-free; vectors are cached under the
    run's cache directory by content hash, so a rerun or the predict step never recomputes them."""

    name = "embedding"
    transformer = EmbeddingPairFeatures
    settings = ("embedder", "embedder_max_length")

    @classmethod
    def build(cls, features: FeatureConfig) -> Any:
        return EmbeddingPairFeatures(conversation=False)

    @classmethod
    def preparer(cls, features: FeatureConfig, cache_dir: str | Path | None) -> Preparer | None:
        from encoders.embedder import TextEmbedder, embed_battles  # torch is imported only here

        cache = None if cache_dir is None else Path(cache_dir) / EMBED_CACHE
        embedder = TextEmbedder(
            str(features.embedder), max_length=features.embedder_max_length, precision=EMBED_PRECISION, cache_dir=cache
        )
        return lambda battles: battles.join(embed_battles(embedder, battles))
