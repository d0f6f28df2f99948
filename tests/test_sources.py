"""Several training sources: parsing, unique ids, grouping, tie handling, and the LOSO command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import swap_feature_frame, swap_proba
from pipelines import loso
from pipelines.data.battles import load_battles
from pipelines.data.folds import prompt_groups
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.training_sets import TrainingSource, load_training_sources
from stacking.tie_handling import TieAwareStacker
from tests.conftest import make_battles

QUICK = {"params": {"learning_rate": 0.2, "num_threads": 1}, "num_boost_round": 40, "early_stopping_rounds": 10}


def _no_ties(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[frame["winner_tie"] == 0].reset_index(drop=True)
    return frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "spec, name, path, weight",
    [
        ("data/train.csv", "train", "data/train.csv", 1.0),
        ("data/hh.csv.gz:0.2", "hh", "data/hh.csv.gz", 0.2),
        ("hh=data/x.csv", "hh", "data/x.csv", 1.0),
        ("hh=data/x.csv:0.5", "hh", "data/x.csv", 0.5),
        ("hh=data/x.csv:1e-1", "hh", "data/x.csv", 0.1),
    ],
)
def test_source_parsing(spec, name, path, weight):
    src = TrainingSource.parse(spec)
    assert (src.name, src.path, src.weight) == (name, Path(path), weight)


def test_source_parsing_rejects_negative_and_empty():
    for bad in ("x=:0.5", "data/x.csv:-1", ":0.3"):
        with pytest.raises(ValueError):
            TrainingSource.parse(bad)


def test_ids_unique_and_tagged(tmp_path):
    primary = _write(make_battles(60, seed=1), tmp_path / "train.csv")
    extra = _write(_no_ties(make_battles(60, seed=2)), tmp_path / "hh.csv")  # same integer ids as primary
    frame = load_training_sources(primary, [f"hh={extra}:0.3"])
    assert frame["id"].is_unique
    assert set(frame["source"]) == {"train", "hh"}
    hh = frame[frame["source"] == "hh"]
    assert hh["id"].str.startswith("hh:").all() and (hh["weight"] == 0.3).all()
    assert not hh["source_has_ties"].any() and frame.loc[frame["is_primary"], "source_has_ties"].all()
    assert frame.loc[frame["is_primary"], "id"].tolist() == load_battles(primary)[0]["id"].tolist()


def test_votes_on_one_pair_share_a_fold(tmp_path):
    base = make_battles(90, seed=3)
    votes = pd.concat([base] * 3, ignore_index=True)  # three votes per pair ...
    votes["id"] = np.arange(len(votes))
    flipped = votes.index % 2 == 1  # ... some with A and B the other way round, and other prompt spacing
    votes.loc[flipped, ["response_a", "response_b"]] = votes.loc[flipped, ["response_b", "response_a"]].to_numpy()
    votes.loc[flipped, "prompt"] = votes.loc[flipped, "prompt"].str.replace(":", " : ")
    votes["source"] = "votes"
    frame = load_training_sources(_write(votes, tmp_path / "v.csv"))
    folds = make_source_folds(frame, n_folds=3, seed=0)
    pair = ["\x1d".join(sorted((a[0], b[0]))) for a, b in zip(frame["a_turns"], frame["b_turns"])]
    per_pair = pd.Series(folds).groupby(pair).nunique()
    assert (per_pair == 1).all()
    groups = source_groups(frame)
    assert pd.Series(groups).groupby(pair).nunique().max() == 1


def _turn_two_votes(base: pd.DataFrame) -> pd.DataFrame:
    """Each turn-1 battle followed by a second turn: the same first question and answers plus a new turn."""
    two = base.copy()
    two["id"] = base["id"] + 100_000
    for col, extra in (("prompt", "And now in one sentence, please?"), ("response_a", "Short a."), ("response_b", "b")):
        two[col] = [json.dumps([*json.loads(t), f"{extra} {k}"]) for k, t in enumerate(base[col])]
    return two


def test_a_turn_two_vote_never_shares_a_fold_with_another_side_than_its_turn_one_vote(tmp_path):
    turn1 = make_battles(90, seed=4)
    turn1["source"] = "mtbench"
    turn2 = _turn_two_votes(turn1)
    turn2["source"] = "mtbench-turn2"
    frame = load_training_sources(_write(pd.concat([turn1, turn2], ignore_index=True), tmp_path / "t.csv"))
    question = [turns[0] for turns in frame["prompt_turns"]]
    for seed in (0, 1, 2):
        folds = make_source_folds(frame, n_folds=3, seed=seed)
        assert (pd.Series(folds).groupby(question).nunique() == 1).all()
    # the whole prompts differ, so prompt grouping alone would have split them
    assert len(set(prompt_groups(frame))) > len(set(question))


def test_one_answer_against_two_opponents_links_the_rows_and_short_turns_do_not():
    from pipelines.data.battles import load_battles_frame as parse

    answer = "A long answer of well over twenty characters."
    rows = [
        ("First prompt here", answer, "other one, also long enough"),
        ("Second prompt, unrelated", "third answer, long enough too", answer),
        ("Third prompt, unrelated", "Yes.", "fourth answer, long enough too"),
        ("Fourth prompt, unrelated", "fifth answer, long enough too", "Yes."),
    ]
    frame = pd.DataFrame(
        {
            "id": range(4),
            "prompt": [json.dumps([p]) for p, _, _ in rows],
            "response_a": [json.dumps([a]) for _, a, _ in rows],
            "response_b": [json.dumps([b]) for _, _, b in rows],
        }
    )
    groups = source_groups(parse(frame, "t", labelled=False)[0])
    assert groups[0] == groups[1]
    assert len({groups[0], groups[2], groups[3]}) == 3  # "Yes." (under 20 characters) links nothing


def _features(n=240, seed=0):
    from features.extractor import FeatureExtractor

    battles, _ = load_battles_frame(make_battles(n, seed=seed))
    return battles, FeatureExtractor(groups=["length", "formatting"], n_jobs=1, progress=False).transform(battles)


def load_battles_frame(frame: pd.DataFrame):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.csv"
        frame.to_csv(path, index=False)
        return load_battles(path)


def test_hierarchical_is_swap_symmetric_and_sums_to_one():
    battles, X = _features()
    y = battles["label"].to_numpy()
    has_ties = np.arange(len(y)) % 2 == 0
    y = np.where(~has_ties & (y == 2), 0, y)
    model = TieAwareStacker("hierarchical", seed=0, **QUICK).fit(X, y, np.where(has_ties, "t", "n"), has_ties)
    p = model.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.predict_proba(swap_feature_frame(X)), swap_proba(p), atol=1e-12)


def test_tieless_rows_do_not_change_tie_model():
    battles, X = _features(300)
    y = battles["label"].to_numpy()
    tied = np.arange(len(y)) < 200
    y = np.where(~tied & (y == 2), 1, y)
    source = np.where(tied, "with_ties", "no_ties")
    groups = np.arange(len(y))
    full = TieAwareStacker("hierarchical", seed=1, **QUICK).fit(X, y, source, tied, groups=groups)
    only = TieAwareStacker("hierarchical", seed=1, **QUICK).fit(
        X[tied], y[tied], source[tied], tied[tied], groups=groups[tied]
    )
    np.testing.assert_array_equal(full.predict_proba(X)[:, 2], only.predict_proba(X)[:, 2])
    plain_full = TieAwareStacker("plain", seed=1, **QUICK).fit(X, y, source, tied, groups=groups)
    plain_only = TieAwareStacker("plain", seed=1, **QUICK).fit(
        X[tied], y[tied], source[tied], tied[tied], groups=groups[tied]
    )
    assert not np.array_equal(plain_full.predict_proba(X)[:, 2], plain_only.predict_proba(X)[:, 2])


@pytest.mark.parametrize("option", ["plain", "weighted", "has_ties_input", "masked_tie", "tie_offset"])
def test_single_booster_options_are_swap_symmetric(option):
    battles, X = _features(180)
    y = battles["label"].to_numpy()
    has_ties = np.arange(len(y)) % 3 != 0
    y = np.where(~has_ties & (y == 2), 0, y)
    source = np.where(has_ties, np.where(np.arange(len(y)) % 2 == 0, "s1", "s2"), "n")
    p_model = TieAwareStacker(option, seed=0, **QUICK).fit(X, y, source, has_ties)
    p = p_model.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(p_model.predict_proba(swap_feature_frame(X)), swap_proba(p), atol=1e-9)


@pytest.mark.slow
def test_loso_command_end_to_end(tmp_path):
    parts = []
    for k, (name, ties) in enumerate([("alpha", True), ("beta", True), ("gamma", False)]):
        frame = make_battles(150, seed=10 + k, start_id=k * 1000)
        if not ties:
            frame = _no_ties(frame)
        frame["prompt"] = frame["prompt"].str.replace("Question", f"{name} question")
        frame["id"] = [f"{name}:{i}" for i in frame["id"]]
        frame["source"] = name
        parts.append(frame)
    combined = _write(pd.concat(parts, ignore_index=True), tmp_path / "combined.csv")
    out = tmp_path / "loso"
    code = loso.main(
        [
            "--combined",
            str(combined),
            "--out",
            str(out),
            "--fold-seeds",
            "2",
            "--options",
            "plain,drop_tieless,hierarchical",
            "--oof-options",
            "drop_tieless,hierarchical",
            "--folds",
            "3",
            "--learning-rate",
            "0.2",
            "--num-boost-round",
            "30",
            "--early-stopping-rounds",
            "5",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    report = json.loads((out / "loso.json").read_text())
    macro = report["summary"]["macro"]
    assert set(macro) == {"plain", "drop_tieless", "hierarchical"}
    assert macro["drop_tieless"]["delta_vs_drop_tieless"]["log_loss"]["mean"] == 0.0
    assert macro["hierarchical"]["delta_vs_drop_tieless"]["log_loss"]["mean"] is not None
    assert report["summary"]["per_source"]["hierarchical"]["gamma"]["pairwise"]["mean"] > 0
    assert len(report["runs"]["loso"]["plain"]["alpha"]) == 2
    for name in ("loso.md", "loso.html", "reliability_hierarchical.png", "reliability_plain.png"):
        assert (out / name).stat().st_size > 0
    assert "Δ vs drop_tieless" in (out / "loso.md").read_text()
    before = (out / "loso.md").read_text()
    (out / "loso.md").unlink()
    assert loso.main(["--rerender", str(out)]) == 0
    assert (out / "loso.md").read_text() == before


def _two_sources(tmp_path, extra_weight="0.5"):
    primary = _write(make_battles(150, seed=4), tmp_path / "train.csv")
    extra = _write(_no_ties(make_battles(120, seed=5, start_id=5000)), tmp_path / "hh.csv")
    return load_training_sources(primary, [f"hh={extra}:{extra_weight}"])


def _length_formatting(battles):
    from features.extractor import FeatureExtractor

    return FeatureExtractor(groups=["length", "formatting"], n_jobs=1, progress=False).transform(battles)


def test_fit_calibrated_over_sources_scores_every_source_and_resolves_auto(tmp_path):
    from pipelines.reports.source_scoring import oof_per_source
    from pipelines.stages.stacker_inputs import source_fit_kwargs
    from stacking.config import StackerConfig
    from stacking.cross_fit import fit_calibrated

    battles = _two_sources(tmp_path)
    X = _length_formatting(battles)
    folds = make_source_folds(battles, n_folds=3, seed=0)
    config = StackerConfig(num_boost_round=40, early_stopping_rounds=10, num_threads=1, params={"learning_rate": 0.2})
    fit = fit_calibrated(X, battles["label"].to_numpy(), folds, config, 0, **source_fit_kwargs(battles))
    assert fit.raw.tie_handling == "masked_tie"  # auto, with a source without ties
    np.testing.assert_allclose(fit.oof_cal.sum(axis=1), 1.0, atol=1e-9)
    scores = oof_per_source(battles, fit.raw.oof)
    assert set(scores) == {"train", "hh"} and scores["hh"]["per_class"]["tie"] is None
    assert pd.Series(folds).groupby(source_groups(battles)).nunique().max() == 1
    assert fit.scored.tolist() == battles["is_primary"].tolist()


def test_loso_holds_out_source_families_together(tmp_path):
    """mtbench-human and its turn-2 votes are one family: held out, trained without and scored together."""
    from features.extractor import FeatureExtractor
    from pipelines.data.training_sets import SOURCE_FAMILIES, family_members, mark_sources_with_ties
    from pipelines.experiments.loso_study import run_loso

    assert SOURCE_FAMILIES["mtbench-human-turn2"] == "mtbench-human"
    parts = []
    for k, name in enumerate(["mtbench-human", "mtbench-human-turn2", "other"]):
        frame = make_battles(120, seed=20 + k, start_id=k * 1000)
        frame["prompt"] = frame["prompt"].str.replace("Question", f"{name} question")
        frame["source"] = name
        parts.append(frame)
    battles = mark_sources_with_ties(load_training_sources(_write(pd.concat(parts), tmp_path / "c.csv")))
    X = FeatureExtractor(groups=["length"], n_jobs=1, progress=False).transform(battles)
    settings = {"params": {"learning_rate": 0.3, "num_threads": 1}, "num_boost_round": 20, "early_stopping_rounds": 5}
    results = run_loso(battles, X, ["plain"], 1, None, 3, [], settings)
    assert set(results["loso"]["plain"]) == {"mtbench-human", "other"}  # two held-out units, not three
    (family_score,) = results["loso"]["plain"]["mtbench-human"]
    assert family_score["rows"] == 240  # both members scored together
    assert family_members(battles["source"]) == {
        "mtbench-human": ["mtbench-human", "mtbench-human-turn2"],
        "other": ["other"],
    }
