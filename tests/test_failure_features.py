"""The "both failed" group: each flag fires on the failure it names and not on a sound answer,
the pair values are symmetric in A and B and say whether both sides failed, and the cost stays
bounded on huge answers."""

from __future__ import annotations

import time

import pytest

from features.extractor import battle_features
from features.failure import failure_side, repeated_trigram_share
from features.groups import DEFAULT_GROUPS, GROUPS
from features.text_view import TextView

PROMPT = ["Explain how photosynthesis turns sunlight, water and carbon dioxide into sugar in plants."]
SOUND = [
    "Photosynthesis happens in the chloroplasts of plants. Sunlight is absorbed by chlorophyll, which splits "
    "water and releases oxygen; the energy is stored and used to turn carbon dioxide into sugar."
]
TRUNCATED = [
    "Photosynthesis happens in the chloroplasts of plants. Sunlight is absorbed by chlorophyll and then the plant "
    "uses that energy to split water molecules into hydrogen and"
]
OPEN_CODE = ["Here is a script about plants and sunlight and water:\n```python\nprint('sugar')\n"]
LOOP = ["the plant the plant the plant " * 40]
REFUSAL = ["I'm sorry, but I cannot help with that request."]
OFF_PROMPT = ["Bananas are yellow. Trains run on rails. My favourite colour is teal, what is yours today?"]


def side(answer: list[str], key: str) -> float:
    return failure_side(TextView.from_turns(answer), TextView.from_turns(PROMPT))[key]


@pytest.mark.parametrize(
    "answer, flag",
    [
        (TRUNCATED, "fail_truncated"),
        (OPEN_CODE, "fail_truncated"),
        (LOOP, "fail_repetitive"),
        (REFUSAL, "fail_refuses"),
        ([" "], "fail_near_empty"),
        (OFF_PROMPT, "fail_off_prompt"),
    ],
)
def test_each_flag_fires_on_its_failure_and_not_on_a_sound_answer(answer, flag):
    assert side(answer, flag) == 1.0
    assert side(SOUND, flag) == 0.0
    assert side(answer, "fail_count") >= 1.0 and side(SOUND, "fail_count") == 0.0


def test_short_lines_and_list_endings_are_not_truncation():
    listing = ["Steps:\n- light is absorbed\n- water is split\n- sugar is made"]
    assert side(listing, "fail_truncated") == 0.0
    assert side(["Yes"], "fail_truncated") == 0.0


def test_repetition_share_orders_varied_below_looping_text():
    varied = tuple("one two three four five six seven eight nine ten".split())
    looping = tuple(("a b c " * 20).split())
    assert repeated_trigram_share(varied) == 0.0
    assert 0.9 < repeated_trigram_share(looping) < 1.0
    assert repeated_trigram_share(("a", "b")) == 0.0


@pytest.mark.parametrize("a, b", [(TRUNCATED, REFUSAL), (LOOP, SOUND), (OFF_PROMPT, [""]), (SOUND, OPEN_CODE)])
def test_pair_values_are_symmetric(a, b):
    ab, ba = battle_features(PROMPT, a, b, ["failure"]), battle_features(PROMPT, b, a, ["failure"])
    pair = [k for k in ab if k.startswith("pair_")]
    assert pair and all(ab[k] == ba[k] for k in pair)


def test_both_failed_needs_both_sides():
    both = battle_features(PROMPT, REFUSAL, ["Sorry, I can't do that."], ["failure"])
    one = battle_features(PROMPT, REFUSAL, SOUND, ["failure"])
    assert both["pair_both_refuses"] == 1.0 and both["pair_min_fail_count"] >= 1.0
    assert one["pair_both_refuses"] == 0.0 and one["pair_min_fail_count"] == 0.0
    assert one["pair_max_fail_count"] >= 1.0


def test_cost_is_bounded_on_a_megabyte_answer():
    huge = ["word " * 200_000]
    start = time.perf_counter()
    row = battle_features(PROMPT, huge, huge, ["failure"])
    assert time.perf_counter() - start < 5.0
    assert row["pair_both_repetitive"] == 1.0


def test_the_group_gives_pair_values_only():
    row = battle_features(PROMPT, TRUNCATED, REFUSAL, ["failure"])
    assert row and all(k.startswith("pair_") for k in row)


def test_failure_is_an_opt_in_group():
    assert "failure" in GROUPS and "failure" not in DEFAULT_GROUPS
