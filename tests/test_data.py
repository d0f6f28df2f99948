import json

import numpy as np
import pandas as pd
import pytest

from pipelines.data.battles import DataError, load_battles, parse_turns, swap_battles
from pipelines.data.folds import data_fingerprint, load_or_make_folds, make_folds, prompt_groups
from tests.conftest import make_battles


def test_load_keeps_and_counts_awkward_rows(train_csv):
    battles, report = load_battles(train_csv)
    assert len(battles) == 240  # nothing dropped
    assert battles.loc[3, "a_turns"] == ["first turn", ""]  # null turn -> empty string
    assert battles.loc[4, "b_turns"] == ["this is [not json"]  # kept as one raw turn
    assert "\ufffd" in battles.loc[5, "prompt_turns"][0]  # lone surrogate replaced
    battles.loc[5, "prompt_turns"][0].encode("utf-8")  # and now encodable
    assert report.invalid_json == {"prompt": 0, "response_a": 0, "response_b": 1}
    assert report.null_turns["response_a"] == 1
    assert report.surrogates["prompt"] == 1
    assert set(battles["label"]) <= {0, 1, 2}
    assert "model_a" not in battles  # nothing may depend on model names


def test_parse_turns_cases():
    assert parse_turns('["a", "b"]') == (["a", "b"], None)
    assert parse_turns("[null]") == ([""], "null_turns")
    assert parse_turns('"just a string"') == (["just a string"], "invalid_json")
    assert parse_turns("[]") == ([""], None)


def _write(tmp_path, frame, name="bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_missing_column_names_file_and_column(tmp_path):
    path = _write(tmp_path, make_battles(10).drop(columns=["response_b"]))
    with pytest.raises(DataError, match=r"bad\.csv.*response_b"):
        load_battles(path)


def test_duplicate_id_names_row(tmp_path):
    frame = make_battles(10)
    frame.loc[7, "id"] = frame.loc[2, "id"]
    with pytest.raises(DataError, match=r"bad\.csv: line 9, column 'id': duplicate id .* \(first seen in line 4\)"):
        load_battles(_write(tmp_path, frame))


def test_labels_not_one_hot_names_row(tmp_path):
    frame = make_battles(10)
    frame.loc[6, ["winner_model_a", "winner_model_b", "winner_tie"]] = [1, 1, 0]
    with pytest.raises(DataError, match=r"bad\.csv: line 8, columns .*not one-hot"):
        load_battles(_write(tmp_path, frame))


def test_label_not_binary_names_cell(tmp_path):
    frame = make_battles(10).astype({"winner_tie": object})
    frame.loc[2, "winner_tie"] = "yes"
    with pytest.raises(DataError, match=r"line 4, column 'winner_tie'"):
        load_battles(_write(tmp_path, frame))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        load_battles(path)
    path.write_text("id,prompt,response_a,response_b\n")
    with pytest.raises(DataError, match="no rows"):
        load_battles(path)


def test_test_file_needs_no_labels_or_model_names(test_csv):
    battles, _ = load_battles(test_csv, labelled=False)
    assert "label" not in battles and len(battles) == 60


def test_swap_battles_is_an_involution(train_csv):
    battles, _ = load_battles(train_csv)
    twice = swap_battles(swap_battles(battles))
    pd.testing.assert_frame_equal(twice, battles)
    assert (swap_battles(battles)["label"].to_numpy()[battles["label"].to_numpy() == 0] == 1).all()


def test_folds_grouped_by_prompt_and_stratified(train_csv, tmp_path):
    battles, _ = load_battles(train_csv)
    folds = make_folds(battles, n_folds=5, seed=0)
    groups = prompt_groups(battles)
    per_group = pd.Series(folds["fold"].to_numpy()).groupby(groups).nunique()
    assert (per_group == 1).all()  # the same prompt never on both sides of a split
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    share = pd.crosstab(folds["fold"], battles["label"], normalize="index")
    assert (share.max() - share.min()).max() < 0.2  # roughly stratified


def test_folds_saved_and_reused_only_for_the_same_seed_and_data(train_csv, tmp_path):
    battles, _ = load_battles(train_csv)
    path = tmp_path / "run" / "folds.csv"
    first = load_or_make_folds(battles, path, 5, seed=0)
    assert path.exists() and path.with_suffix(".json").exists()
    made_at = path.stat().st_mtime_ns
    again = load_or_make_folds(battles, path, 5, seed=0)
    assert path.stat().st_mtime_ns == made_at  # reused, not rewritten
    np.testing.assert_array_equal(first["fold"].to_numpy(), again["fold"].to_numpy())

    reseeded = load_or_make_folds(battles, path, 5, seed=123)  # another seed: new folds, never the old ones
    np.testing.assert_array_equal(reseeded["fold"].to_numpy(), make_folds(battles, 5, seed=123)["fold"].to_numpy())
    assert json.loads(path.with_suffix(".json").read_text())["seed"] == 123

    fewer = battles.iloc[:-12].reset_index(drop=True)  # other data of the same ids' subset: remade
    assert len(load_or_make_folds(fewer, path, 5, seed=123)) == len(fewer)
    relabelled = battles.assign(label=(battles["label"] + 1) % 3)
    load_or_make_folds(relabelled, path, 5, seed=123)
    assert json.loads(path.with_suffix(".json").read_text())["data_sha256"] == data_fingerprint(relabelled)


def test_folds_without_a_matching_sidecar_are_remade(train_csv, tmp_path):
    """A run killed between writing folds.csv and folds.json, or a hand-edited folds.csv, is not trusted."""
    battles, _ = load_battles(train_csv)
    path = tmp_path / "folds.csv"
    load_or_make_folds(battles, path, 5, seed=0)
    path.write_text(path.read_text().replace(",0\n", ",1\n", 3))  # edited folds, old sidecar
    folds = load_or_make_folds(battles, path, 5, seed=0)
    np.testing.assert_array_equal(folds["fold"].to_numpy(), make_folds(battles, 5, seed=0)["fold"].to_numpy())
    path.with_suffix(".json").unlink()
    assert len(load_or_make_folds(battles, path, 5, seed=0)) == len(battles)
    assert path.with_suffix(".json").exists()
