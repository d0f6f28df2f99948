"""Tie handling as one class per option in one registry: each option does what its docstring says,
and a new option is one registered class, usable by name with no other file edited."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from arena_schema import N_CLASSES, TIE
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit
from stacking.lgbm import LGBMStacker
from stacking.model import StackerModel, check_savable_tie_handling
from stacking.tie_handling import (
    HAS_TIES_COLUMN,
    MASK_LOGIT,
    DecidedStacker,
    TieAwareStacker,
    TieHandling,
    TieStacker,
    describe_options,
    resolve_tie_handling,
)
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


def _by_hand(option: str, X, y, source, has_ties, weight, groups) -> np.ndarray:
    """Each option's documented behaviour, written with the plain boosters."""

    def booster(rows=None, w=weight, init=None, frame=X) -> LGBMStacker:
        rows = np.ones(len(y), dtype=bool) if rows is None else rows
        return LGBMStacker(seed=1, config=CONFIG).fit(
            frame[rows], y[rows], groups[rows], sample_weight=w[rows], init_score=None if init is None else init[rows]
        )

    init = np.zeros((len(y), N_CLASSES))
    init[~has_ties, TIE] = MASK_LOGIT
    if option == "plain":
        return booster().predict_proba(X)
    if option == "drop_tieless":
        return booster(rows=has_ties).predict_proba(X)
    if option == "weighted":
        return booster(w=np.where(has_ties, weight, 0.2 * weight)).predict_proba(X)
    if option == "has_ties_input":
        fitted = booster(frame=X.assign(**{HAS_TIES_COLUMN: has_ties.astype(np.float32)}))
        return fitted.predict_proba(X.assign(**{HAS_TIES_COLUMN: np.float32(1.0)}))
    if option == "masked_tie":
        return booster(init=init).predict_proba(X)
    if option == "tie_offset":
        logit = lambda p: np.log(p / (1 - p))  # noqa: E731
        pooled = (y[has_ties] == TIE).mean()
        for s in ("s1", "s2"):
            init[source == s, TIE] = logit((y[source == s] == TIE).mean()) - logit(pooled)
        return booster(init=init).predict_proba(X)
    assert option == "hierarchical"
    tie = TieStacker(seed=1, config=CONFIG).fit(
        X[has_ties], (y[has_ties] == TIE).astype(int), groups[has_ties], sample_weight=weight[has_ties]
    )
    decided = y != TIE
    b = DecidedStacker(seed=1, config=CONFIG).fit(
        X[decided], y[decided], groups[decided], sample_weight=weight[decided]
    )
    p_tie, p_b = tie.predict_proba(X), b.predict_proba(X)
    return np.column_stack([(1 - p_tie) * (1 - p_b), (1 - p_tie) * p_b, p_tie])


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
def test_each_option_is_its_documented_behaviour(data, option):
    """Bit-identical to the same boosters fitted by hand as the module doc describes each option."""
    X, y, source, has_ties, weight, groups = data
    model = TieAwareStacker(option, seed=1, config=CONFIG).fit(X, y, source, has_ties, weight, groups)
    np.testing.assert_array_equal(model.predict_proba(X), _by_hand(option, X, y, source, has_ties, weight, groups))


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
    fit = cross_fit(X, y, np.arange(len(y)) % 3, config=config, X_test=X.iloc[:7], tieless=~has_ties, source=source)
    assert fit.tie_handling == half_weight and np.isfinite(fit.oof).all() and fit.test is not None
    saved = StackerModel.from_fold_models(fit.models, None, {})  # type: ignore[arg-type]
    np.testing.assert_allclose(saved.predict_proba_uncalibrated(X.iloc[:7]), fit.test, atol=1e-12)


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
