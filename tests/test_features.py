import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena_schema import swap_feature_frame
from features.extractor import FeatureExtractor, battle_features, group_columns
from features.groups import DEFAULT_GROUPS, GROUPS, moving_average_ttr
from tests.conftest import ROOT

turn = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200) | st.sampled_from(
    [
        "",
        "## Title\n- item\n- item two\n1. first\n```py\nx = 1\n```\n**bold** and `code`",
        "I'm sorry, but I cannot help with that. As an AI language model...",
        "| a | b |\n|---|---|\n| 1 | 2 |\nSee [docs](http://x.y) and https://example.com",
    ]
)
turns = st.lists(turn, min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=turns, a=turns, b=turns)
def test_swap_maps_features_predictably(prompt, a, b):
    """Swapping A and B exchanges a_/b_ columns, flips diff_/logratio_, keeps pair/prompt columns."""
    groups = list(GROUPS)
    direct = pd.DataFrame([battle_features(prompt, a, b, groups)])
    swapped = pd.DataFrame([battle_features(prompt, b, a, groups)])[direct.columns]
    pd.testing.assert_frame_equal(swap_feature_frame(direct), swapped, check_exact=True)


def test_formatting_counts_known_markdown():
    text = (
        "# Title\n\nSome intro with `inline` code and **bold** and *italic*.\n\n"
        "- one\n- two\n* three\n\n1. first\n2) second\n\n```python\nprint(1)\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n[link](https://x.org) I'm sorry, I cannot do that."
    )
    row = battle_features(["q"], [text], [""], ["formatting"])
    assert row["a_headers"] == 1
    assert row["a_bullets"] == 3
    assert row["a_numbered"] == 2
    assert row["a_code_blocks"] == 1
    assert row["a_inline_code"] == 1
    assert row["a_bold"] == 1
    assert row["a_italic"] == 1
    assert row["a_links"] == 1
    assert row["a_table_rows"] == 3
    assert row["a_refusal"] == 1 and row["a_apology"] == 1
    assert row["b_headers"] == 0 and row["diff_bullets"] == 3


def test_length_overlap_and_identity():
    row = battle_features(
        ["What is Python?"],
        ["Python is a language.\nIt is popular."],
        ["Python is a language.\nIt is popular."],
        ["length", "overlap"],
    )
    assert row["a_chars"] == len("Python is a language.\nIt is popular.")
    assert row["a_lines"] == 2 and row["a_words"] == 7 and row["a_turns"] == 1
    assert row["pair_identical"] == 1.0 and row["diff_chars"] == 0 and row["logratio_chars"] == 0
    assert row["a_prompt_recall"] == pytest.approx(2 / 3)  # "python", "is" of {what, is, python}
    empty = battle_features(["q"], [""], ["x"], ["length"])
    assert empty["a_empty"] == 1.0 and empty["b_empty"] == 0.0


def test_mattr_matches_definition():
    rng = np.random.default_rng(0)
    words = tuple(rng.choice(list("abcdefghijklmnop"), size=300))
    slow = np.mean([len(set(words[i : i + 50])) / 50 for i in range(len(words) - 49)])
    assert moving_average_ttr(words) == pytest.approx(slow)
    assert moving_average_ttr(("a", "b", "a")) == pytest.approx(2 / 3)


def test_extractor_parallel_equals_serial_and_caches(train_csv, tmp_path):
    from pipelines.data.battles import load_battles

    battles, _ = load_battles(train_csv)
    serial = FeatureExtractor(n_jobs=1, progress=False).transform(battles)
    cache = tmp_path / "cache"
    parallel = FeatureExtractor(n_jobs=2, chunk_size=50, cache_dir=cache, progress=False).transform(battles)
    pd.testing.assert_frame_equal(serial, parallel)
    files = list(cache.glob("features_*.parquet"))
    assert len(files) == 1
    again = FeatureExtractor(n_jobs=2, cache_dir=cache, progress=False).transform(battles)
    pd.testing.assert_frame_equal(again, serial)
    # a change in content gives a new key
    battles.loc[0, "a_turns"] = ["changed"]
    FeatureExtractor(n_jobs=1, cache_dir=cache, progress=False).transform(battles)
    assert len(list(cache.glob("features_*.parquet"))) == 2
    assert set(group_columns(serial.columns)) == set(DEFAULT_GROUPS)
    assert sum(len(v) for v in group_columns(serial.columns).values()) == serial.shape[1]


def test_unknown_group_is_an_error():
    with pytest.raises(ValueError, match="unknown feature group"):
        FeatureExtractor(["length", "vibes"])


def test_readability_works_with_no_network(tmp_path):
    """A fresh process with an empty NLTK path and sockets disabled still scores readability."""
    script = textwrap.dedent(f"""
        import socket, sys
        sys.path.insert(0, {str(ROOT)!r})
        def no_network(*a, **k):
            raise OSError("network disabled in test")
        socket.socket.connect = no_network
        socket.create_connection = no_network
        import nltk
        nltk.download = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("nltk.download called"))
        from features.readability import ensure_offline_cmudict, readability_scores
        ensure_offline_cmudict()
        s = readability_scores("The cat sat on the mat. It was a sunny day and everyone was happy.")
        assert s["flesch_reading_ease"] > 60, s
        print("OK", s["flesch_reading_ease"])
    """)
    env = {
        **os.environ,
        "NLTK_DATA": str(tmp_path / "empty_nltk"),
        "HOME": str(tmp_path),
        "ARENA_PREF_NLTK_DATA": str(tmp_path / "nltk_offline"),
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("OK")
    assert (tmp_path / "nltk_offline" / "corpora" / "cmudict" / "cmudict").stat().st_size > 1_000_000


def test_fast_readability_equals_textstat_on_real_text():
    """The fast path must give textstat's own numbers, bit for bit, or not be used at all."""
    from features.readability import MAX_CHARS, _fast_textstat, ensure_offline_cmudict, textstat_scores
    from pipelines.data.battles import load_battles
    from pipelines.runtime.paths import SAMPLE_DIR

    ensure_offline_cmudict()
    fast = _fast_textstat()
    if fast is None:
        pytest.skip("installed textstat differs from the release the fast path reproduces: textstat itself is used")
    battles, _ = load_battles(SAMPLE_DIR / "train.csv")
    texts = [t[:MAX_CHARS] for turns in battles["a_turns"].head(150) for t in turns if t.strip()]
    texts += ["I'm sorry... Dr. Smith's e-mail (v2.0) costs $3.50!", "One. Two? Three!", "x" * 50, "Ünïcödé wörds ñ."]
    mismatches = [t[:60] for t in texts if fast.scores(t) != textstat_scores(t)]
    assert mismatches == []
