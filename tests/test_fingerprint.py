"""The feature fingerprint a bundle is checked with sees every feature group in every regime its code
treats apart: a change of any single feature that only shows on long (or multi-turn, code, markdown,
non-Latin, empty, identical) input changes it. Before, it ran on four short battles and missed them."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import pytest

import features.extractor
import features.readability
import features.sentiment
import features.similarity
import features.spelling
from features.groups import GROUPS, FeatureGroup
from features.prose import prose
from features.text_view import FORMAT_PATTERNS, TextView
from pipelines.bundle.identity import FINGERPRINT_BATTLES, feature_difference, feature_fingerprint
from pipelines.bundle.store import BUNDLE_FORMAT

MARKDOWN_KINDS = ("headers", "bullets", "numbered", "bold", "italic", "inline_code", "links", "table_rows")


def _non_latin(text: str) -> bool:
    return any(c.isalpha() and ord(c) > 0x24F for c in text)


# A regime: where a change of a feature's code may show and nowhere else; (side view, prompt) -> bool.
SIDE_REGIMES = {
    "long answer (> 1,500 chars)": lambda v, p: len(v.text) > 1_500,
    "past the readability cap (> 4,000)": lambda v, p: len(v.text) > 4_000,
    "past the similarity cap (> 8,000)": lambda v, p: len(v.text) > 8_000,
    "past the prose cap (> 20,000)": lambda v, p: len(v.text) > 20_000,
    "short answer (< 80)": lambda v, p: 0 < len(v.text) < 80,
    "several turns": lambda v, p: v.n_turns > 1,
    "an empty (null) turn": lambda v, p: "\n\n\n\n" in v.text or v.text.endswith("\n\n"),
    "long several turns": lambda v, p: v.n_turns > 1 and len(v.text) > 1_500,
    "fenced code": lambda v, p: "```" in v.text,
    "long with code": lambda v, p: "```" in v.text and len(v.text) > 1_500,
    "every markdown kind": lambda v, p: all(FORMAT_PATTERNS[k].search(v.text) for k in MARKDOWN_KINDS),
    "non-Latin script": lambda v, p: _non_latin(v.text),
    "long non-Latin": lambda v, p: _non_latin(v.text) and len(v.text) > 1_500,
    "refusal": lambda v, p: bool(FORMAT_PATTERNS["refusal"].search(v.text)),
    "empty answer": lambda v, p: not v.text.strip(),
    "long prompt (> 1,500)": lambda v, p: len(p.text) > 1_500,
    "multi-turn prompt": lambda v, p: p.n_turns > 1,
    "empty prompt": lambda v, p: not p.text.strip(),
}
# Regimes of the pair: (a, b, prompt) -> bool; only groups with pair features can see them.
PAIR_REGIMES = {
    "identical answers": lambda a, b, p: a.text == b.text,
    "identical long answers": lambda a, b, p: a.text == b.text and len(a.text) > 1_500,
    "both empty": lambda a, b, p: not a.text.strip() and not b.text.strip(),
    "one empty, one long": lambda a, b, p: min(len(a.text), len(b.text)) == 0 and max(len(a.text), len(b.text)) > 1_500,
}


def _keys(group: FeatureGroup) -> tuple[list[str], list[str]]:
    view, prompt = TextView.from_turns(["An answer."]), TextView.from_turns(["A prompt?"])
    side = list(group.side(view, prompt))
    pair = list(group.pair(view, view, prompt)) if group.pair else []
    return side, pair


def _memo(function):
    """The group's own function, computed once per input: the fingerprint is taken hundreds of times."""
    cache: dict = {}

    @functools.wraps(function)
    def wrapper(*views: TextView) -> dict[str, float]:
        key = tuple((v.text, v.n_turns) for v in views)
        if key not in cache:
            cache[key] = function(*views)
        return dict(cache[key])

    return wrapper


@functools.cache
def _memo_group(name: str) -> FeatureGroup:
    group = GROUPS[name]
    return dataclasses.replace(group, side=_memo(group.side), pair=_memo(group.pair) if group.pair else None)


def _changed(group: FeatureGroup, key: str, side_when=None, pair_when=None) -> FeatureGroup:
    """``group`` with feature ``key`` changed by +1.0 where the regime holds: an edit of one feature's code."""

    def side(view: TextView, prompt: TextView) -> dict[str, float]:
        out = group.side(view, prompt)
        if key in out and side_when is not None and side_when(view, prompt):
            out[key] += 1.0
        return out

    def pair(a: TextView, b: TextView, prompt: TextView) -> dict[str, float]:
        assert group.pair is not None
        out = group.pair(a, b, prompt)
        hit = (side_when is not None and (side_when(a, prompt) or side_when(b, prompt))) or (
            pair_when is not None and pair_when(a, b, prompt)
        )
        if key in out and hit:
            out[key] += 1.0
        return out

    return dataclasses.replace(group, side=side, pair=pair if group.pair else None)


@functools.cache
def _view(turns: tuple[str, ...]) -> TextView:
    return TextView.from_turns(list(turns))


class _CachedViews:
    """``TextView`` for the extractor, each battle side tokenised once for the whole module."""

    @staticmethod
    def from_turns(turns: list[str]) -> TextView:
        return _view(tuple(turns))


def _fingerprint_with(monkeypatch, name: str, group: FeatureGroup) -> str:
    monkeypatch.setitem(GROUPS, name, group)
    monkeypatch.setattr(features.extractor, "TextView", _CachedViews)
    return feature_fingerprint((name,))["outputs_sha256"]


def _cached(when):
    """A regime's answer per input, computed once (the 22,000-character answer is scanned often)."""
    cache: dict = {}

    def cached(*views: TextView) -> bool:
        key = tuple((v.text, v.n_turns) for v in views)
        if key not in cache:
            cache[key] = bool(when(*views))
        return cache[key]

    return cached


SIDE_REGIMES = {name: _cached(when) for name, when in SIDE_REGIMES.items()}
PAIR_REGIMES = {name: _cached(when) for name, when in PAIR_REGIMES.items()}


SIDE_CASES = [(g, r) for g in GROUPS for r in SIDE_REGIMES]
PAIR_CASES = [(g, r) for g in GROUPS if GROUPS[g].pair is not None for r in PAIR_REGIMES]


def _unseen_changes(monkeypatch, name: str, pair_only: bool, **when) -> list[str]:
    """The feature keys of group ``name`` whose change (on the rows ``when`` picks) leaves the fingerprint as it was."""
    memo = _memo_group(name)
    baseline = _fingerprint_with(monkeypatch, name, memo)
    side_keys, pair_keys = _keys(memo)
    keys = pair_keys if pair_only else side_keys + pair_keys
    return [k for k in keys if _fingerprint_with(monkeypatch, name, _changed(memo, k, **when)) == baseline]


@pytest.mark.parametrize(("name", "regime"), SIDE_CASES, ids=[f"{g}-{r}" for g, r in SIDE_CASES])
def test_a_change_of_any_feature_in_one_regime_changes_the_fingerprint(monkeypatch, name, regime):
    missed = _unseen_changes(monkeypatch, name, False, side_when=SIDE_REGIMES[regime])
    assert not missed, f"group {name!r}: a change of {missed} only on {regime} leaves the fingerprint as it was"


@pytest.mark.parametrize(("name", "regime"), PAIR_CASES, ids=[f"{g}-{r}" for g, r in PAIR_CASES])
def test_a_change_of_any_pair_feature_in_a_pair_regime_changes_the_fingerprint(monkeypatch, name, regime):
    missed = _unseen_changes(monkeypatch, name, True, pair_when=PAIR_REGIMES[regime])
    assert not missed, f"group {name!r}: a change of {missed} only on {regime} leaves the fingerprint as it was"


@pytest.mark.parametrize("name", list(GROUPS))
def test_the_wrapped_group_is_the_group_and_a_change_nowhere_changes_nothing(monkeypatch, name):
    """The test's own machinery is neutral: memoised and never-true perturbations give today's fingerprint."""
    today = feature_fingerprint((name,))["outputs_sha256"]
    memo = _memo_group(name)
    assert _fingerprint_with(monkeypatch, name, memo) == today
    side_keys, pair_keys = _keys(memo)
    never = _changed(memo, (side_keys + pair_keys)[0], lambda v, p: False, lambda a, b, p: False)
    assert _fingerprint_with(monkeypatch, name, never) == today


@pytest.mark.parametrize(
    ("target", "attribute", "value"),
    [
        (features.readability, "MAX_CHARS", 3_000),
        (features.readability, "MAX_CHARS", 5_000),
        (features.similarity, "MAX_CHARS", 6_000),
        (features.similarity, "MAX_CHARS", 9_000),
        (features.similarity, "SHORT_CHARS", 60),
        (features.sentiment, "prose", functools.partial(prose, max_chars=15_000)),
        (features.spelling, "prose", functools.partial(prose, max_chars=15_000)),
        (features.sentiment, "MAX_SENTENCES", 100),
    ],
    ids=lambda x: x if isinstance(x, str) else getattr(x, "__name__", None),
)
def test_a_changed_length_cap_changes_the_fingerprint(monkeypatch, target, attribute, value):
    """The caps that bound work per answer are code too: each one moved changes the fingerprint."""
    groups = tuple(GROUPS)
    before = feature_fingerprint(groups)
    monkeypatch.setattr(target, attribute, value)
    assert feature_difference(before, groups) == (
        "the feature code gives other values on the fixed check battles than when the bundle was saved"
    )


def test_the_battles_cover_every_regime():
    views = [
        (TextView.from_turns(getattr(row, side)), TextView.from_turns(row.prompt_turns))
        for row in FINGERPRINT_BATTLES.itertuples()
        for side in ("a_turns", "b_turns")
    ]
    for regime, when in SIDE_REGIMES.items():
        assert any(when(v, p) for v, p in views), regime
    pairs = [
        (TextView.from_turns(r.a_turns), TextView.from_turns(r.b_turns), TextView.from_turns(r.prompt_turns))
        for r in FINGERPRINT_BATTLES.itertuples()
    ]
    for regime, pair_when in PAIR_REGIMES.items():
        assert any(pair_when(*abp) for abp in pairs), regime


# The battles' texts as pinned by BUNDLE_FORMAT 3: any edit of them changes every bundle's fingerprint.
BATTLES_SHA256 = "962f632ebd7b22d4a8821d8d9d3ece2510a95cffe9cba018918bfafe73a74f68"


def test_changing_the_battles_means_a_new_bundle_format():
    """Bundles saved with other check battles cannot be checked by this code: such an edit must bump
    ``pipelines.bundle.store.BUNDLE_FORMAT`` (old bundles are then refused with "train again") and this pin."""
    payload = json.dumps(FINGERPRINT_BATTLES.to_dict(orient="list"), ensure_ascii=False, sort_keys=True)
    assert (BUNDLE_FORMAT, hashlib.sha256(payload.encode()).hexdigest()) == (3, BATTLES_SHA256)


def test_the_four_short_battles_of_before_missed_a_change_on_long_answers(monkeypatch):
    """Why the battles grew: on the four short battles a feature changed above 1,500 characters passed."""
    import pipelines.bundle.identity as identity

    def fingerprint(group: FeatureGroup, battles) -> str:
        monkeypatch.setattr(identity, "FINGERPRINT_BATTLES", battles)
        return _fingerprint_with(monkeypatch, "readability", group)

    memo = _memo_group("readability")
    changed = _changed(memo, "flesch_reading_ease", SIDE_REGIMES["long answer (> 1,500 chars)"])
    short = FINGERPRINT_BATTLES[FINGERPRINT_BATTLES["id"].isin(["fp-1", "fp-2", "fp-3", "fp-4"])]
    assert fingerprint(changed, short) == fingerprint(memo, short)
    assert fingerprint(changed, FINGERPRINT_BATTLES) != fingerprint(memo, FINGERPRINT_BATTLES)
