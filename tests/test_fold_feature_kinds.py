"""Fold-feature kinds as one class per kind in one registry: the flags, the transformers a config builds, the
names in reports and the classes a bundle may load all come from it, so a new kind is one registered class."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pytest

from features.embedding_features import EmbeddingPairFeatures
from features.text_vectors import TfidfDiffTransformer
from pipelines.config.run_config import FeatureConfig
from pipelines.stages import fold_feature_kinds
from pipelines.stages.fold_feature_kinds import FoldFeatureKind, kinds, register, setting_names
from pipelines.stages.fold_feature_setup import fold_feature_name, fold_transformers, prepare_battles
from stacking import transformer_state
from tests.conftest import make_battles

CORE_SETTINGS = {"groups", "n_jobs", "chunk_size"}  # FeatureConfig's fields that belong to no fold-feature kind


def test_the_built_in_kinds_in_column_order():
    assert [(k.name, k.transformer) for k in kinds()][:2] == [
        ("tfidf", TfidfDiffTransformer),
        ("embedding", EmbeddingPairFeatures),
    ]
    both = FeatureConfig(tfidf=True, embedder="some/model")
    assert [type(t) for t in fold_transformers(both)] == [TfidfDiffTransformer, EmbeddingPairFeatures]
    assert fold_transformers(FeatureConfig()) == []
    assert [fold_feature_name(t) for t in fold_transformers(both)] == ["tfidf", "embedding"]
    assert fold_feature_name(pd.DataFrame()) == "DataFrame"  # a user's own transformer keeps its class name


def test_every_kind_setting_is_a_config_field_and_a_flag():
    """The commands' fold-feature flags are the kinds' settings, and every FeatureConfig field is either a
    kind's or one of the handcrafted features' own (so a kind's setting cannot be forgotten in the registry)."""
    from pipelines.cli import FOLD_FEATURE_FLAGS, add_data_args

    config_fields = {f.name for f in fields(FeatureConfig)}
    assert FOLD_FEATURE_FLAGS == setting_names() == ("tfidf", "embedder", "embedder_max_length")
    assert set(setting_names()) <= config_fields and config_fields - set(setting_names()) <= CORE_SETTINGS
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    assert set(setting_names()) <= {a.dest for a in parser._actions}


def test_the_built_in_classes_are_the_ones_a_bundle_may_load():
    allowed = set(transformer_state.ALLOWED_TRANSFORMERS.values())
    assert {k.transformer for k in kinds()} <= allowed


def test_without_a_preparer_the_battles_are_the_same_frame():
    battles = make_battles(5, seed=1)
    assert prepare_battles(FeatureConfig(tfidf=True), battles) is battles


class LengthGap:
    """A test kind's transformer: answer A's length minus B's, over the fold's mean answer length."""

    def fit(self, battles: pd.DataFrame, y=None) -> LengthGap:
        self.scale_ = float(battles["gap"].abs().mean() or 1.0)
        return self

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"diff_gap": battles["gap"] / self.scale_}, index=battles.index)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"scale": self.scale_}, {}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LengthGap:
        out = cls()
        out.scale_ = float(meta["scale"])
        return out


@dataclass
class WithLengthGap(FeatureConfig):
    length_gap: bool = False


@pytest.fixture
def length_gap_kind(monkeypatch):
    """Registered into copies of the registry and the allow-list, so no other test sees it."""
    monkeypatch.setattr(fold_feature_kinds, "REGISTRY", dict(fold_feature_kinds.REGISTRY))
    monkeypatch.setattr(transformer_state, "ALLOWED_TRANSFORMERS", dict(transformer_state.ALLOWED_TRANSFORMERS))

    @register
    class LengthGapKind(FoldFeatureKind):
        """A test kind that needs a column joined onto the battles."""

        name = "length_gap"
        transformer = LengthGap
        settings = ("length_gap",)

        @classmethod
        def preparer(cls, features, cache_dir):
            return lambda b: b.assign(gap=[len(a[-1]) - len(c[-1]) for a, c in zip(b["a_turns"], b["b_turns"])])

    return LengthGapKind


def test_a_new_kind_is_one_registered_class(length_gap_kind, tmp_path):
    """Registering one class: the config builds it after the built-in kinds, prepares the battles it reads,
    names it, offers its setting as a flag and lets a bundle save and load it."""
    from pipelines.data.battles import load_battles

    path = tmp_path / "train.csv"
    make_battles(20, seed=3).to_csv(path, index=False)
    battles = load_battles(path)[0]
    config = WithLengthGap(tfidf=True, length_gap=True)
    assert [type(t) for t in fold_transformers(config)] == [TfidfDiffTransformer, LengthGap]
    assert fold_transformers(WithLengthGap()) == []
    assert setting_names()[-1] == "length_gap"
    prepared = prepare_battles(config, battles)
    assert "gap" in prepared and "gap" not in battles
    fitted = fold_transformers(WithLengthGap(length_gap=True))[0].fit(prepared)
    assert fold_feature_name(fitted) == "length_gap"

    transformer_state.save_transformer(fitted, tmp_path / "fold_0_0")
    loaded = transformer_state.load_transformer(tmp_path / "fold_0_0")
    pd.testing.assert_frame_equal(loaded.transform(prepared), fitted.transform(prepared), check_exact=True)


def test_a_kind_is_refused_without_name_settings_or_state(length_gap_kind):
    class Nameless(FoldFeatureKind):
        transformer = LengthGap
        settings = ("x",)

    class Clashing(FoldFeatureKind):
        name = "clash"
        transformer = LengthGap
        settings = ("tfidf",)

    class Stateless(FoldFeatureKind):
        name = "stateless"
        transformer = object
        settings = ("stateless",)

    with pytest.raises(ValueError, match="needs a name"):
        register(Nameless)
    with pytest.raises(ValueError, match="overlap"):
        register(Clashing)
    with pytest.raises(TypeError, match="get_state"):
        register(Stateless)
    renamed = type("Again", (length_gap_kind,), {})
    with pytest.raises(ValueError, match="registered twice"):
        register(renamed)
