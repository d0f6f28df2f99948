"""Fold features from the config, and their JSON + npz state for the model bundle."""

import json

import numpy as np
import pandas as pd
import pytest

from features.embedding_features import EmbeddingPairFeatures
from features.text_vectors import TfidfDiffTransformer
from pipelines.config.run_config import FeatureConfig, RunConfig
from pipelines.data.battles import load_battles
from pipelines.stages.fold_feature_setup import build_fold_features, prepare_battles
from stacking.transformer_state import load_transformer, save_transformer
from tests.conftest import make_battles


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("ffs") / "train.csv"
    make_battles(60, seed=5).to_csv(path, index=False)
    return load_battles(path)[0]


def _round_trip(model, folder):
    """Through the JSON and npz files the bundle stores it in."""
    save_transformer(model, folder / "fold_0_0")
    return load_transformer(folder / "fold_0_0")


def test_features_only_by_default(battles):
    transformers, train = build_fold_features(FeatureConfig(), battles)
    assert transformers == [] and train is battles


def test_tfidf_only(battles, tmp_path):
    config = FeatureConfig(tfidf=True)
    transformers, train = build_fold_features(config, battles.iloc[:40])
    test = prepare_battles(config, battles.iloc[40:])
    assert [type(t) for t in transformers] == [TfidfDiffTransformer]
    assert not any(c.startswith("emb_") for c in train.columns) and len(test) == 20
    fitted = TfidfDiffTransformer(n_components=4, max_features=2**10).fit(train)
    restored = _round_trip(fitted, tmp_path)
    pd.testing.assert_frame_equal(restored.transform(test), fitted.transform(test), check_exact=True)


def test_embedder_columns_cache_and_predict_time(battles, tiny_bert, tmp_path):
    features = FeatureConfig(embedder=str(tiny_bert), embedder_max_length=32)
    transformers, train = build_fold_features(features, battles.iloc[:40], tmp_path)
    test = prepare_battles(features, battles.iloc[40:], tmp_path)
    assert [type(t) for t in transformers] == [EmbeddingPairFeatures]
    assert {"emb_prompt", "emb_a", "emb_b"} <= set(train.columns) <= set(test.columns) | set(train.columns)
    assert list((tmp_path / "embeddings").glob("emb-*.npz"))  # cached under the run cache dir
    fitted = transformers[0].fit(train)
    # predict time: the embedder path comes back from the recorded config; cached vectors are reused
    recorded = RunConfig.from_dict(json.loads(json.dumps(RunConfig("t", "s", "o", features=features).to_dict())))
    again = prepare_battles(recorded.features, battles.iloc[40:], tmp_path)
    restored = _round_trip(fitted, tmp_path / "bundle")
    pd.testing.assert_frame_equal(restored.transform(again), fitted.transform(test), check_exact=True)


def test_unknown_state_is_refused(tmp_path):
    """A bundle naming a class no kind registered is refused before anything is imported or built."""
    (tmp_path / "fold_0_0.json").write_text(json.dumps({"class": "builtins.eval", "meta": {}}))
    np.savez(tmp_path / "fold_0_0.npz")
    with pytest.raises(ValueError, match="not in the allow-list"):
        load_transformer(tmp_path / "fold_0_0")


@pytest.mark.slow
def test_full_run_with_tfidf_round_trips_through_the_bundle(train_csv, test_csv, tmp_path):
    """--tfidf: the per-fold TF-IDF transformers are fitted in the run, saved with their fold's booster,
    and a loaded bundle reproduces the submission."""
    import json

    from arena_schema import CLASS_COLUMNS
    from pipelines import full_run
    from pipelines.model.estimator import ArenaPreferenceModel

    out = tmp_path / "run"
    fast = ["--num-boost-round", "30", "--early-stopping-rounds", "5", "--num-threads", "1", "--n-jobs", "1"]
    fast += ["--folds", "2"]  # the per-fold TF-IDF fit is the cost; two folds show the round trip as well as five
    args = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(out), "--tfidf", "--no-progress"]
    assert full_run.main([*args, *fast]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["features"]["tfidf"] is True
    model = ArenaPreferenceModel.load(out / "model")
    assert model.tfidf
    saved = [p for p in (out / "model").rglob("*.json") if "TfidfDiffTransformer" in p.read_text()]
    assert saved  # the fitted per-fold transformers travel with their boosters
    sub = pd.read_csv(out / "submission.csv")
    test = pd.read_csv(test_csv)
    np.testing.assert_allclose(model.predict_proba(test), sub[list(CLASS_COLUMNS)].to_numpy(), atol=1e-5)
