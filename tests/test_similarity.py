"""The answer-similarity pair group: symmetric in A and B, bounded on huge or empty answers, and
high for the pairs people tie on (identical, same final number, both refusals)."""

from __future__ import annotations

import time

import pytest

from features.extractor import FeatureExtractor, battle_features
from features.groups import DEFAULT_GROUPS, OPT_IN_GROUPS, expand_groups
from tests.conftest import make_battles

CASES = [
    (["What is 12*3?"], ["12*3 = 36."], ["The answer is 36"]),
    (["Tell me a joke"], ["I'm sorry, I can't help with that."], ["As an AI, I cannot do that."]),
    (["Write code"], ["```python\nprint(1)\n```"], ["Sure:\n- one\n- two"]),
    (["x"], [""], ["🙂🙂🙂"]),
]


@pytest.mark.parametrize("prompt, a, b", CASES)
def test_similarity_is_symmetric(prompt, a, b):
    assert battle_features(prompt, a, b, ["similarity"]) == battle_features(prompt, b, a, ["similarity"])


def test_similarity_values_for_tie_like_pairs():
    same = battle_features(["q"], ["Paris is the capital."], ["Paris is the capital."], ["similarity"])
    assert same["pair_char3_cosine"] == pytest.approx(1.0) and same["pair_chars_ratio"] == 1.0
    number = battle_features(*CASES[0], ["similarity"])
    assert number["pair_same_last_number"] == 1.0
    refuse = battle_features(*CASES[1], ["similarity"])
    assert refuse["pair_both_refuse"] == 1.0 and refuse["pair_one_refuses"] == 0.0
    empty = battle_features(["x"], [""], [""], ["similarity"])
    assert empty["pair_char3_cosine"] == 0.0 and empty["pair_both_short"] == 1.0


def test_similarity_cost_is_bounded_on_a_megabyte_answer():
    huge = ["word " * 200_000]
    start = time.perf_counter()
    row = battle_features(["q"], huge, huge, ["similarity"])
    assert time.perf_counter() - start < 5.0
    assert row["pair_char3_cosine"] == pytest.approx(1.0)


def test_similarity_is_opt_in_and_cached(tmp_path):
    # opt-in since the families study: dropping it was better on every seed (docs/new_source_calibration.md)
    assert "similarity" in OPT_IN_GROUPS and "similarity" not in DEFAULT_GROUPS
    assert expand_groups(["default", "similarity"]) == (*DEFAULT_GROUPS, "similarity")
    battles = make_battles(30, seed=3)
    from pipelines.data.battles import load_battles_frame

    parsed, _ = load_battles_frame(battles, "t", labelled=True)
    X = FeatureExtractor(["length", "similarity"], n_jobs=1, cache_dir=tmp_path, progress=False).transform(parsed)
    again = FeatureExtractor(["length", "similarity"], n_jobs=1, cache_dir=tmp_path, progress=False).transform(parsed)
    assert "pair_char3_cosine" in X.columns and X.equals(again)
