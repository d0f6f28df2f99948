"""Tie handling as one class per option in one registry: each option does what its docstring says,
and a new option is one registered class, usable by name with no other file edited."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from arena_schema import A_WINS, B_WINS, TIE, swap_feature_frame, swap_proba
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit
from stacking.lgbm import LGBMStacker
from stacking.model import StackerModel, check_savable_tie_handling
from stacking.tie_handling import TieAwareStacker, TieHandling, describe_options, resolve_tie_handling
from stacking.tie_registry import REGISTRY, choices, option_names, register
from tests.conftest import ROOT, make_battles

BUILT_IN = ("plain", "drop_tieless", "weighted", "has_ties_input", "masked_tie", "tie_offset", "hierarchical")
CONFIG = StackerConfig(num_boost_round=30, early_stopping_rounds=5, num_threads=1, params={"learning_rate": 0.2})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """120 battles, 2 tie-bearing sources and 1 without ties (its ties relabelled), non-unit weights."""
    from features.extractor import FeatureExtractor
    from pipelines.data.battles import load_battles

    path = tmp_path_factory.mktemp("ties") / "train.csv"
    make_battles(120, seed=11).to_csv(path, index=False)
    battles, _ = load_battles(path)
    X = FeatureExtractor(["length", "formatting"], n_jobs=1, progress=False).transform(battles)
    n = len(battles)
    has_ties = np.arange(n) % 3 != 0
    y = np.where(~has_ties & (battles["label"].to_numpy() == TIE), 0, battles["label"].to_numpy())
    source = np.where(has_ties, np.where(np.arange(n) % 2 == 0, "s1", "s2"), "none")
    weight = np.linspace(0.5, 1.5, n)
    groups = np.arange(n) // 2
    return X, y, source, has_ties, weight, groups


PARTS = ("X", "y", "source", "has_ties", "weight", "groups")


def _proba(data, option: str, rows=None, tieless_weight: float | None = None, **parts) -> np.ndarray:
    """``option`` fitted on ``data`` (``parts`` replaced, only ``rows`` kept), predicting every row of ``data``."""
    given = {**dict(zip(PARTS, data)), **parts}
    if rows is not None:
        given = {name: value[rows] for name, value in given.items()}
    settings = {} if tieless_weight is None else {"tieless_weight": tieless_weight}
    model = TieAwareStacker(option, seed=1, config=CONFIG, **settings).fit(*(given[name] for name in PARTS))
    return model.predict_proba(data[0])


def _tieless_flipped(data) -> np.ndarray:
    """The labels with every tie-less row's winner exchanged (A <-> B)."""
    _, y, _, has_ties, _, _ = data
    return np.where(has_ties, y, np.where(y == A_WINS, B_WINS, A_WINS))


def _b_given_decided(proba: np.ndarray) -> np.ndarray:
    return proba[:, B_WINS] / (proba[:, A_WINS] + proba[:, B_WINS])


def _mean_tie(data, proba: np.ndarray) -> float:
    """Mean P(tie) over the rows of the tie-bearing sources."""
    return float(proba[data[3], TIE].mean())


def test_the_registry_holds_the_built_in_options_and_feeds_config_cli_and_docs():
    assert option_names()[: len(BUILT_IN)] == BUILT_IN and choices()[0] == "auto"
    for name in choices():
        assert StackerConfig(tie_handling=name).tie_handling == name
    with pytest.raises(ValueError, match="tie_handling must be one of"):
        StackerConfig(tie_handling="nope")
    with pytest.raises(ValueError, match="tie handling must be one of"):
        TieAwareStacker("nope")

    import argparse

    from pipelines.cli import add_data_args
    from pipelines.loso import build_parser

    parser = argparse.ArgumentParser()
    add_data_args(parser)
    flag = next(a for a in parser._actions if a.dest == "tie_handling")
    assert tuple(flag.choices) == choices()
    assert build_parser().get_default("options") == ",".join(option_names())

    # the option list in the docs is the registry's, each option described by its class's docstring
    row = next(
        line
        for line in (ROOT / "docs" / "several_sources.md").read_text().splitlines()
        if "TieAwareStacker(option)" in line
    )
    assert tuple(re.findall(r"`([a-z_]+)`", row.split("`TieAwareStacker(option)`:")[1])) == BUILT_IN
    assert [name for name, text in describe_options()][: len(BUILT_IN)] == list(BUILT_IN)
    assert all(text for _, text in describe_options())


@pytest.mark.parametrize("option", BUILT_IN)
def test_every_option_predicts_swap_symmetric_distributions(data, option):
    """Rows sum to one, and p(A | A, B) == p(B | B, A): every booster is swap-augmented and swap-averaged."""
    X, y, source, has_ties, weight, groups = data
    model = TieAwareStacker(option, seed=1, config=CONFIG).fit(X, y, source, has_ties, weight, groups)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert ((proba > 0) & (proba < 1)).all()
    np.testing.assert_allclose(swap_proba(model.predict_proba(swap_feature_frame(X))), proba, atol=1e-12)


@pytest.mark.parametrize("option", [o for o in BUILT_IN if o != "drop_tieless"])
def test_only_drop_tieless_learns_nothing_from_tieless_rows(data, option):
    """Tie-less rows teach A versus B to every option but ``drop_tieless``, which leaves them out: it is
    the same model fitted without them, whatever their labels."""
    flipped = _tieless_flipped(data)
    assert not np.array_equal(_b_given_decided(_proba(data, option)), _b_given_decided(_proba(data, option, y=flipped)))
    dropped = _proba(data, "drop_tieless")
    np.testing.assert_array_equal(dropped, _proba(data, "drop_tieless", y=flipped))
    np.testing.assert_array_equal(dropped, _proba(data, "drop_tieless", rows=data[3]))


def test_plain_is_the_single_source_stacker_whichever_sources_have_ties(data):
    X, y, source, has_ties, weight, groups = data
    plain = _proba(data, "plain")
    np.testing.assert_array_equal(
        plain, _proba(data, "plain", has_ties=np.ones_like(has_ties), source=np.full(len(y), "x"))
    )
    single = LGBMStacker(seed=1, config=CONFIG).fit(X, y, groups, sample_weight=weight).predict_proba(X)
    np.testing.assert_array_equal(plain, single)


def test_weighted_scales_the_tieless_rows_and_less_weight_leaves_more_ties(data):
    _, _, _, has_ties, weight, _ = data
    np.testing.assert_array_equal(_proba(data, "weighted", tieless_weight=1.0), _proba(data, "plain"))
    scaled = np.where(has_ties, weight, 0.2 * weight)
    np.testing.assert_array_equal(_proba(data, "weighted", tieless_weight=0.2), _proba(data, "plain", weight=scaled))
    ties = [_mean_tie(data, _proba(data, "weighted", tieless_weight=w)) for w in (1.0, 0.5, 0.2, 0.05)]
    assert ties == sorted(ties) and len(set(ties)) == 4, ties  # tie-less rows (never ties) pull P(tie) down less


def test_has_ties_input_is_plain_without_tieless_rows_and_predicts_as_tie_bearing(data):
    """The input is constant without tie-less rows (so the model is plain's); with them it explains their
    missing ties, and prediction (the input set to 1) leaves more P(tie) than plain does."""
    every = np.ones_like(data[3])
    np.testing.assert_array_equal(_proba(data, "has_ties_input", has_ties=every), _proba(data, "plain", has_ties=every))
    assert _mean_tie(data, _proba(data, "has_ties_input")) > _mean_tie(data, _proba(data, "plain")) + 0.01


def test_masked_tie_keeps_the_tie_rate_of_the_tie_bearing_sources(data):
    """Tie-less rows do not count as 'not a tie': P(tie) on the tie-bearing rows stays near their own tie rate,
    where plain's is pulled towards the pooled rate of all rows."""
    _, y, _, has_ties, _, _ = data
    rate = (y[has_ties] == TIE).mean()
    masked, plain = _mean_tie(data, _proba(data, "masked_tie")), _mean_tie(data, _proba(data, "plain"))
    assert abs(masked - rate) < 0.02 < 0.05 < abs(plain - rate), (masked, plain, rate)


def test_tie_offset_is_the_log_odds_of_each_source_against_the_pooled_tie_rate(data):
    """A known case on paper: ties in 1 of 4 rows of s1 and 1 of 2 of s2 (40 rows each) pool to 3/8, so the
    offsets are logit(1/4) - logit(3/8) = log(5/9) and logit(1/2) - logit(3/8) = log(5/3). With one tie-bearing
    source every offset is 0 and the model is masked_tie's."""
    X, y, source, has_ties, weight, groups = data
    y = np.where(y == TIE, A_WINS, y)
    s1, s2 = np.flatnonzero(source == "s1"), np.flatnonzero(source == "s2")
    assert len(s1) == len(s2) == 40
    y[s1[::4]], y[s2[::2]] = TIE, TIE
    handling = (
        TieAwareStacker("tie_offset", seed=1, config=CONFIG).fit(X, y, source, has_ties, weight, groups).handling_
    )
    assert handling.pooled_tie_rate_ == pytest.approx(3 / 8, abs=1e-15)
    assert handling.source_offsets_ == pytest.approx({"s1": np.log(5 / 9), "s2": np.log(5 / 3)}, abs=1e-12)

    one_source = np.where(has_ties, "s1", "none")
    np.testing.assert_array_equal(_proba(data, "tie_offset", source=one_source), _proba(data, "masked_tie"))


def test_hierarchical_ties_come_from_tie_bearing_rows_and_a_versus_b_from_decided_rows(data):
    """Tie-less rows provably cannot change P(tie) (it is the same without them); tie rows cannot change
    P(B | decided) (their features may be anything)."""
    X, y, _, has_ties, _, _ = data
    full = _proba(data, "hierarchical")
    np.testing.assert_array_equal(full[:, TIE], _proba(data, "hierarchical", rows=has_ties)[:, TIE])
    ties = y == TIE
    moved = X.copy()
    moved.loc[ties] = X.loc[ties] * 3.0 + 1.0
    b_given_decided = _b_given_decided(_proba(data, "hierarchical", X=moved))
    np.testing.assert_allclose(b_given_decided, _b_given_decided(full), rtol=0, atol=1e-12)  # P(tie) moved: float error


def test_savable_and_source_needs_come_from_the_option_classes(data):
    X, y, source, has_ties, weight, groups = data
    for name in ("auto", "plain", "drop_tieless", "weighted", "masked_tie", "tie_offset"):
        check_savable_tie_handling(name)
    for name in ("hierarchical", "has_ties_input"):
        with pytest.raises(ValueError, match="auto, plain, drop_tieless, weighted, masked_tie, tie_offset"):
            check_savable_tie_handling(name)
    config = StackerConfig(**{**CONFIG.__dict__, "tie_handling": "tie_offset"})
    with pytest.raises(ValueError, match="'tie_offset' needs each row's source"):
        cross_fit(X, y, np.arange(len(y)) % 2, config=config, tieless=~has_ties)
    plain = cross_fit(X, y, np.arange(len(y)) % 2, config=CONFIG, tieless=~has_ties, source=source)
    assert plain.tie_handling == "masked_tie"  # auto with a tie-less source
    assert resolve_tie_handling("auto", None) == "plain"
    folds = cross_fit(X, y, np.arange(len(y)) % 2, config=StackerConfig(**{**CONFIG.__dict__, "tie_handling": "plain"}))
    assert all(type(m) is LGBMStacker for m in folds.models)  # plain's folds are the single-source stacker


class HalfWeightTieless(TieHandling):
    """Tie-less rows count one half (a test option)."""

    name = "test_half_weight"

    def sample_weight(self, weight: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        return np.where(has_ties, weight, weight / 2)


@pytest.fixture
def half_weight() -> Iterator[str]:
    register(HalfWeightTieless)
    yield HalfWeightTieless.name
    del REGISTRY[HalfWeightTieless.name]


def test_a_new_option_is_one_registered_class(data, half_weight):
    """Registering one class makes it a config value, a CLI choice and a stacker, fitted and saved."""
    X, y, source, has_ties, weight, groups = data
    assert half_weight in choices()
    model = TieAwareStacker(half_weight, seed=1, config=CONFIG).fit(X, y, source, has_ties, weight, groups)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    same = TieAwareStacker("weighted", tieless_weight=0.5, seed=1, config=CONFIG).fit(
        X, y, source, has_ties, weight, groups
    )
    np.testing.assert_array_equal(proba, same.predict_proba(X))  # what the class says it does

    config = StackerConfig(**{**CONFIG.__dict__, "tie_handling": half_weight})
    fit = cross_fit(X, y, np.arange(len(y)) % 3, config=config, tieless=~has_ties, source=source)
    assert fit.tie_handling == half_weight and np.isfinite(fit.oof).all()
    saved = StackerModel.from_fold_models(fit.models, None, {})  # type: ignore[arg-type]
    fold_mean = np.mean([m.predict_proba(X.iloc[:7]) for m in fit.models], axis=0)  # a saved model: its folds' mean
    np.testing.assert_allclose(saved.predict_proba_uncalibrated(X.iloc[:7]), fold_mean, atol=1e-12)


def test_the_study_settings_are_one_preset():
    """The LOSO command, the benchmarks and the study stacker read one preset; its values are the ones every
    committed study ran with (so cached pieces keyed on the settings keep their keys)."""
    import json

    from pipelines.loso import build_parser
    from pipelines.reports import loso_report
    from stacking.config import STUDY_PRESET

    settings = {
        "params": {"learning_rate": 0.08, "num_threads": 1},
        "num_boost_round": 600,
        "early_stopping_rounds": 30,
    }
    assert json.dumps(STUDY_PRESET.stacker_settings()) == json.dumps(settings)
    assert STUDY_PRESET.fold_seeds(3) == [42, 43, 44] and loso_report.BASELINE == "drop_tieless"
    args = build_parser().parse_args(["--combined", "x.csv", "--out", "o"])
    assert (args.learning_rate, args.num_boost_round, args.early_stopping_rounds, args.num_threads) == (
        0.08,
        600,
        30,
        1,
    )
    assert (args.tieless_weight, args.folds) == (STUDY_PRESET.tieless_weight, STUDY_PRESET.n_folds)
    study = TieAwareStacker(STUDY_PRESET.option).resolved_config
    assert (study.num_boost_round, study.early_stopping_rounds) == (600, 30)
    assert resolve_tie_handling("auto", np.array([True])) == STUDY_PRESET.option
