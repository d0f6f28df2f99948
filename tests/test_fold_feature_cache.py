"""stacking.fold_feature_cache in tune and ablation: results equal to refitting, one fit per fold, no held rows."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from features.text_vectors import TfidfDiffTransformer
from pipelines import ablation, tune
from pipelines.cli import run_config_from_args
from pipelines.experiments import ablation as ablation_engine
from pipelines.experiments import tune as tune_engine
from pipelines.model.model_inputs import model_inputs
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.tuning import searched_config
from tests.conftest import make_battles

FAST = ["--num-boost-round", "15", "--early-stopping-rounds", "4", "--num-threads", "1", "--no-progress"]
FAST += ["--n-jobs", "1", "--groups", "length", "--tfidf", "--seed", "3"]
SMALL_TFIDF = TfidfDiffTransformer(n_components=4, max_features=2**10)
FIT_ROWS: list[np.ndarray] = []  # what every SpyFeature.fit saw, in order


class SpyFeature(TransformerMixin, BaseEstimator):
    """Label-free and fitted on rows: the A - B length difference over the fit rows' mean length (a scale
    only, which trees do not see: the equality checks rest on the TF-IDF fitted beside it)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def fit(self, battles: pd.DataFrame, y=None):
        FIT_ROWS.append(battles.index.to_numpy().copy())
        self.mean_ = float(self._lengths(battles).mean())
        return self

    @staticmethod
    def _lengths(battles: pd.DataFrame) -> np.ndarray:
        return np.concatenate([battles[f"{s}_turns"].map(lambda t: len("".join(t))).to_numpy() for s in "ab"])

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        n = len(battles)
        diff = (self._lengths(battles)[:n] - self._lengths(battles)[n:]) * self.scale / self.mean_
        return pd.DataFrame({"diff_spy_length": diff.astype(np.float32)}, index=battles.index)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    train, test = folder / "train.csv", folder / "test.csv"
    make_battles(90, seed=11).to_csv(train, index=False)
    make_battles(10, seed=12, labelled=False, start_id=90000).to_csv(test, index=False)
    return ["--train", str(train), "--test", str(test)]


def _config(parser, data, out):
    return run_config_from_args(parser.parse_args([*data, "--out", str(out), *FAST]))


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    """The run's model inputs with a small TF-IDF and the spy as fold features."""
    config = _config(ablation.build_parser(), data, tmp_path_factory.mktemp("run"))
    inputs = model_inputs(config)
    assert [type(t) for t in inputs.fold_features] == [TfidfDiffTransformer]  # --tfidf reached the inputs
    return replace(inputs, fold_features=[SMALL_TFIDF, SpyFeature()]), config


BASE = StackerConfig(num_boost_round=15, early_stopping_rounds=4, num_threads=1)
STACKERS = [BASE, searched_config(BASE, {"num_leaves": 5}, "none")]


def test_cached_fits_equal_refits_for_every_variant_and_trial(model):
    """Ablation's variants (all, one or no fold feature) and two trial configs: OOF bit-identical."""
    plain, config = model
    cached = plain.with_fold_cache()
    for stacker in STACKERS:
        for chosen in (plain.fold_features, plain.fold_features[:1], plain.fold_features[1:], []):
            want = plain.fit(stacker, 3, fold_features=chosen)
            got = cached.fit(stacker, 3, fold_features=chosen)
            assert np.array_equal(got.raw.oof, want.raw.oof) and np.array_equal(got.oof_cal, want.oof_cal)
            assert got.raw.best_iterations == want.raw.best_iterations
    n_folds = len(np.unique(plain.inputs.folds))
    assert cached.fold_cache is not None and cached.fold_cache.n_fits == 2 * n_folds  # per feature and fold
    assert cached.fold_cache.n_transforms == 2 * 2 * n_folds  # each fold's training and held rows, kept
    assert cached.fold_cache.nbytes() > 0


def test_each_fold_feature_is_fitted_once_per_fold_and_never_on_held_rows(model):
    """Tune's evaluation over 2 fold seeds and 3 trials: the spy is fitted once per (seed, fold), on the
    fold's training rows only."""
    plain, config = model
    spied = replace(plain, fold_features=[SpyFeature()]).with_fold_cache()
    evaluation = tune_engine.Evaluation.of(spied, config, fold_seeds=2)
    FIT_ROWS.clear()
    for stacker in STACKERS + [searched_config(STACKERS[0], {"num_leaves": 9}, "temperature")]:
        evaluation(stacker)
    n_folds = len(np.unique(plain.inputs.folds))
    assert len(FIT_ROWS) == 2 * n_folds
    expected = [np.flatnonzero(folds != k) for folds in evaluation.fold_sets for k in range(n_folds)]
    held = [np.flatnonzero(folds == k) for folds in evaluation.fold_sets for k in range(n_folds)]
    for rows, train, own_held in zip(FIT_ROWS, expected, held):
        assert np.array_equal(rows, train)  # the battles' index is positional, so these are positions
        assert not np.isin(own_held, rows).any()  # never a row of the fold it predicts


def test_tune_evaluation_equals_the_refit_path(model):
    plain, config = model
    cached = plain.with_fold_cache()
    for stacker in STACKERS:
        want = tune_engine.Evaluation.of(plain, config, fold_seeds=2)(stacker)
        got = tune_engine.Evaluation.of(cached, config, fold_seeds=2)(stacker)
        assert got.as_dict() == want.as_dict()


def test_tune_and_ablation_commands_give_the_same_results_with_and_without_the_cache(data, tmp_path):
    """The engines end to end (default TF-IDF, run's folds): study trials and ablation report identical."""
    tune_config = tune_engine.TuneConfig(n_trials=1)
    studies = {}
    for use in (True, False):
        config = _config(tune.build_parser(), data, tmp_path / f"tune-{use}")
        studies[use] = tune_engine.tune(config, tune_config, fold_cache=use)["study"]
    for a, b in zip(studies[True].trials, studies[False].trials, strict=True):
        assert (a.params, a.value, a.user_attrs) == (b.params, b.value, b.user_attrs)
    reports = {}
    for use in (True, False):
        config = _config(ablation.build_parser(), data, tmp_path / f"abl-{use}")
        reports[use] = ablation_engine.run_ablation(config, fold_cache=use)
    assert "drop:fold:tfidf" in reports[True]["variants"]
    assert reports[True]["variants"] == reports[False]["variants"]
    assert reports[True]["position"] == reports[False]["position"]


def test_a_cache_over_other_battles_is_refused(model):
    plain, _ = model
    i = plain.inputs
    other = FoldFeatureCache(i.train.copy())
    with pytest.raises(ValueError, match="other battles"):
        cross_fit(i.X, i.y, i.folds, fold_features=[SpyFeature()], battles=i.train, fold_cache=other)


def test_transforms_of_transformers_it_did_not_fit_are_not_kept(model):
    plain, _ = model
    cache = FoldFeatureCache(plain.inputs.train)
    outside = SpyFeature().fit(plain.inputs.train)
    rows = np.arange(10)
    first, second = cache.transform(outside, rows), cache.transform(outside, rows)
    assert first is not second and cache.n_transforms == 2 and cache.nbytes() == 0
    fitted = cache.fit(SpyFeature(), rows)
    assert cache.fit(SpyFeature(), rows) is fitted and cache.fit(SpyFeature(scale=2.0), rows) is not fitted
    assert cache.fit(SpyFeature(), rows[::-1]) is not fitted  # other rows (or order): another fit
    assert cache.transform(fitted, rows) is cache.transform(fitted, rows)


def test_loso_study_shares_fits_across_options_with_the_same_results(model):
    """The leave-one-source-out study (sequential): every option trains on the same rows per seed, so the fold
    feature is fitted once per (seed, training rows), never on the rows it scores; scores equal refitting."""
    from pipelines.data.training_sets import mark_sources_with_ties
    from pipelines.experiments.loso_study import run_loso

    plain, _ = model
    battles = plain.inputs.train.assign(source=np.where(np.arange(len(plain.inputs.y)) % 3 == 0, "s1", "s2"))
    battles = mark_sources_with_ties(battles.assign(label=plain.inputs.y))
    X = plain.inputs.X
    settings = {"params": {"num_threads": 1}, "num_boost_round": 15, "early_stopping_rounds": 4}
    options, results, fits = ["plain", "drop_tieless", "masked_tie"], {}, {}
    for use in (True, False):
        FIT_ROWS.clear()
        results[use] = run_loso(
            battles,
            X,
            options,
            2,
            n_folds=3,
            settings=settings,
            fold_features=[SMALL_TFIDF, SpyFeature()],
            fold_cache=use,
        )
        fits[use] = [rows.copy() for rows in FIT_ROWS]
    assert set(results[True]["loso"]) == set(options) and set(results[True]["oof"]) == set(options)
    assert results[True]["loso"] == results[False]["loso"] and results[True]["oof"] == results[False]["oof"]
    assert results[True]["reliability"] == results[False]["reliability"]
    per_seed = 2 + 3  # two held-out sources, three OOF folds
    assert len(fits[True]) == 2 * per_seed and len(fits[False]) == len(options) * 2 * per_seed
    sources = battles["source"].to_numpy()
    for rows in fits[True][:2]:  # the held-out-source fits of the first seed: s1, then s2
        assert len(set(sources[rows])) == 1  # trained on the other source only
    assert set(sources[fits[True][0]]) == {"s2"} and set(sources[fits[True][1]]) == {"s1"}
