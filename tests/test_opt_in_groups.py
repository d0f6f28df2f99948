"""The opt-in feature groups (sentiment, spelling): what they count, symmetry, cache, bundle, bad text."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import pytest

from arena_schema import swap_feature_frame
from features.extractor import FeatureExtractor, battle_features, group_columns
from features.groups import DEFAULT_GROUPS, GROUPS, OPT_IN_GROUPS, expand_groups
from features.prose import prose
from features.sentiment import sentiment_scores
from features.spelling import spelling_scores
from pipelines.model.estimator import ArenaPreferenceModel
from stacking.config import StackerConfig
from tests.conftest import make_battles

OPT_IN = ["sentiment", "spelling"]
CODE = "```python\ndef fetch_urls(xs2):\n    return [requests.get(u) for u in xs2]  # noqa\n```"
BAD_TEXTS = {
    "empty": "",
    "whitespace": " \n\t ",
    "emoji": "😀🎉🔥👍" * 50,
    "code": CODE,
    "one_mb": ("Ths is a wonderfull sentence, it is great! " * 24_000)[: 1 << 20],
    "surrogate_free_unicode": "Ünïcödé tëxt — 中文 ✓",
}


def test_registered_but_not_default():
    assert set(OPT_IN) <= set(OPT_IN_GROUPS) and set(OPT_IN) <= set(GROUPS)
    assert not set(OPT_IN) & set(DEFAULT_GROUPS)
    assert FeatureExtractor(n_jobs=1).groups == DEFAULT_GROUPS
    assert expand_groups(["default", "sentiment", "length"]) == (*DEFAULT_GROUPS, "sentiment")


def test_sentiment_orders_and_ignores_code():
    happy = sentiment_scores("I love this. It is wonderful and great!")
    sad = sentiment_scores("This is terrible. I hate it and it is awful.")
    assert happy["sent_mean"] > 0.5 > -0.5 > sad["sent_mean"]
    assert happy["sent_pos_share"] == 1.0 and sad["sent_neg_share"] == 1.0
    assert sentiment_scores(CODE) == dict.fromkeys(happy, 0.0)
    assert sentiment_scores("Great answer!\n" + CODE) == sentiment_scores("Great answer!")


def test_spelling_counts_errors_not_code_urls_numbers_or_names():
    s = spelling_scores("This sentense has teh errors.")
    assert (s["spell_words"], s["spell_errors"]) == (4, 2)  # "this" is capitalised: not checked
    clean = spelling_scores(
        f"Visit https://exampel.com/fooo or www.exmaple.org, mail bob@exmaple.com; 12345 and 3.14 are "
        f"numbers, snake_case and camelCase and x2 are names, as are Zorblax and NASA.\n{CODE}\n"
        "Use `fooo_barr()` inline. I didn't know."
    )
    assert clean["spell_errors"] == 0 and clean["spell_words"] > 10
    assert spelling_scores("the qwzx tool", allowed=frozenset({"qwzx"}))["spell_errors"] == 0
    assert spelling_scores("the qwzx tool")["spell_errors"] == 1
    slips = spelling_scores("This is is a apple. i think so, an book. it ends")["grammar_slips"]
    # repeated word, a + vowel, lower-case i, an + consonant, lower-case sentence start twice ("i", "it")
    assert slips == 6
    assert spelling_scores("An hour, a user, a one-off. Fine.")["grammar_slips"] == 0


def test_prompt_words_are_not_errors_in_a_battle():
    row = battle_features(
        ["How do I use qwzxlib?"], ["Install qwzxlib first."], ["Install qwzxlb first."], ["spelling"]
    )
    assert row["a_spell_errors"] == 0 and row["b_spell_errors"] == 1 and row["diff_spell_errors"] == -1


@pytest.mark.parametrize("name", list(BAD_TEXTS))
def test_bad_text_is_finite_and_bounded(name):
    text = BAD_TEXTS[name]
    start = time.perf_counter()
    row = battle_features(["Tell me something."], [text], ["A plain answer."], OPT_IN)
    assert time.perf_counter() - start < 5.0  # 1 MB is read up to the prose cap only
    assert all(math.isfinite(v) for v in row.values()), row
    if name in ("empty", "whitespace", "emoji", "code"):
        assert row["a_spell_words"] == 0 and row["a_spell_errors"] == 0 and row["a_sent_mean"] == 0
    if name == "one_mb":
        assert row["a_spell_errors"] > 0 and row["a_sent_pos_share"] > 0
        assert len(prose(text)) <= 20_000


def test_swap_flips_columns():
    battles = make_battles(12, seed=3)
    battles = battles.assign(
        response_a=['["I love it! Ths is great."]'] * 6 + list(battles["response_a"][6:]),
        response_b=['["I hate teh bugs. Awful."]'] * 6 + list(battles["response_b"][6:]),
    )
    from pipelines.data.battles import load_battles_frame, swap_battles

    parsed, _ = load_battles_frame(battles)
    ex = FeatureExtractor([*DEFAULT_GROUPS, *OPT_IN], n_jobs=1, progress=False)
    direct = ex.transform(parsed)
    swapped = ex.transform(swap_battles(parsed))[direct.columns]
    pd.testing.assert_frame_equal(swap_feature_frame(direct), swapped, check_exact=True)
    assert set(group_columns(direct.columns)) == set(DEFAULT_GROUPS) | set(OPT_IN)
    assert (direct["diff_sent_mean"].iloc[:6] > 0).all() and (direct["b_spell_errors"].iloc[:6] == 1).all()


def test_cached_like_the_others(tmp_path, caplog):
    parsed, _ = __import__("pipelines.data.battles", fromlist=["x"]).load_battles_frame(make_battles(20, seed=4))
    groups = [*DEFAULT_GROUPS, "sentiment"]
    first = FeatureExtractor(groups, n_jobs=1, cache_dir=tmp_path, progress=False).transform(parsed)
    with caplog.at_level(logging.INFO, logger="features.extractor"):
        again = FeatureExtractor(groups, n_jobs=1, cache_dir=tmp_path, progress=False).transform(parsed)
    assert "cache hit" in caplog.text
    pd.testing.assert_frame_equal(first, again)
    plain = FeatureExtractor(DEFAULT_GROUPS, n_jobs=1, cache_dir=tmp_path, progress=False).transform(parsed)
    assert not any(c.startswith(("a_sent", "b_sent")) for c in plain.columns)  # a different cache entry
    assert len(list(tmp_path.glob("features_*.parquet"))) == 2


def test_bundle_round_trip(tmp_path):
    train = make_battles(90, seed=5)
    test = make_battles(15, seed=6, labelled=False, start_id=9000)
    quick = StackerConfig(num_boost_round=30, early_stopping_rounds=10, num_threads=1)
    groups = ("length", "sentiment", "spelling")
    model = ArenaPreferenceModel(n_folds=3, stacker=quick, feature_groups=groups, progress=False).fit(train)
    proba = model.predict_proba(test)
    model.save(tmp_path / "bundle")
    loaded = ArenaPreferenceModel.load(tmp_path / "bundle")
    assert tuple(loaded.get_params()["feature_groups"]) == groups
    np.testing.assert_allclose(loaded.predict_proba(test), proba, atol=1e-6)


def test_groups_flag_expands_default():
    import argparse

    from pipelines.cli import add_data_args, run_config_from_data_args

    p = argparse.ArgumentParser()
    add_data_args(p)
    config, _ = run_config_from_data_args(p.parse_args(["--groups", "default,sentiment,spelling"]))
    assert config.features.groups == (*DEFAULT_GROUPS, "sentiment", "spelling")
    config, _ = run_config_from_data_args(p.parse_args([]))
    assert config.features.groups == DEFAULT_GROUPS


def test_no_network_and_only_bundled_files_at_run_time():
    """Both libraries load only the files inside their wheels and open no socket (checked with an
    audit hook in a fresh interpreter, so the libraries load under it)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys\n"
        "opened = []\n"
        "def hook(event, args):\n"
        "    if event.startswith('socket.'): raise RuntimeError('network: ' + event)\n"
        "    if event == 'open' and isinstance(args[0], str) and not args[0].endswith(('.py', '.pyc')):\n"
        "        opened.append(args[0])\n"
        "from features.sentiment import sentiment_scores\n"
        "from features.spelling import spelling_scores\n"
        "sys.addaudithook(hook)\n"
        "assert sentiment_scores('I love it.')['sent_mean'] > 0 and spelling_scores('teh')['spell_errors'] == 1\n"
        "print('\\n'.join(opened))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = [line for line in out.splitlines() if line and "__pycache__" not in line]
    assert files and all("site-packages" in f or "dist-packages" in f for f in files), files
    assert {f.rsplit("/", 1)[-1] for f in files} <= {"vader_lexicon.txt", "emoji_utf8_lexicon.txt", "en.json.gz"}
