"""The data report on a tiny hand-made file: every count checked against what was written into it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.data_report import main
from pipelines.reports.data_report import build_report
from pipelines.reports.data_summary import SummaryConfig, wilson


def _row(i, prompt, a, b, label, model_a="", model_b="", source="s1", raw=False):
    cells = [prompt, a, b] if raw else [json.dumps(x) for x in (prompt, a, b)]
    return {
        "id": i,
        "source": source,
        "model_a": model_a,
        "model_b": model_b,
        "prompt": cells[0],
        "response_a": cells[1],
        "response_b": cells[2],
        "winner_model_a": int(label == 0),
        "winner_model_b": int(label == 1),
        "winner_tie": int(label == 2),
    }


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        _row(1, ["Hi there"], ["Hello!"], ["Hey, how can I help you today?"], 1, "m1", "m2"),
        _row(2, ["hi   THERE"], ["Yo"], ["Hello!"], 0, "m2", "m3"),  # same prompt as row 1 (normalised)
        _row(3, ["Other", "turn two"], ["x" * 50], ["y" * 10], 0, "m1", "m3", source="s2"),
        _row(4, ["Other", "turn two"], ["y" * 10], ["x" * 50], 2, "m3", "m1", source="s2"),  # row 3 swapped
        _row(5, '["p"]', "not json", '["b"]', 2, "m1", "m2", raw=True),  # invalid JSON answer A
        _row(6, '["q", null]', '["same"]', '["same"]', 1, "", "", raw=True),  # null turn, identical answers
        _row(7, ["lone \ud800 surrogate"], ["a"], ["b"], 0, "m1", "m2"),
    ]
    train = tmp_path / "train.csv"
    pd.DataFrame(rows).to_csv(train, index=False)
    test = tmp_path / "test.csv"
    test_rows = [{k: r[k] for k in ("id", "prompt", "response_a", "response_b")} for r in rows[:3]]
    test_rows.append({"id": 9, "prompt": json.dumps(["new"]), "response_a": json.dumps(["a" * 400]),
                      "response_b": json.dumps(["b"])})  # fmt: skip
    pd.DataFrame(test_rows).to_csv(test, index=False)
    return train, test


def test_report_counts(tiny, tmp_path):
    train, test = tiny
    out = tmp_path / "report"
    result = build_report(train, test, out, SummaryConfig(min_model_battles=1))
    for name in ("data_report.md", "data_report.html", "data_report.json", "lengths.png", "turns.png",
                 "train_classes.png", "train_length_diff.png", "train_models.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    s = result["files"]["train"]
    assert s["rows"] == 7
    assert s["classes"]["rows"] == 7
    assert s["classes"]["a"] == pytest.approx(3 / 7) and s["classes"]["tie"] == pytest.approx(2 / 7)
    assert s["classes_per_source"]["s2"] == {"rows": 2, "a": 0.5, "b": 0.0, "tie": 0.5}
    assert s["rows_per_source"] == {"s1": 5, "s2": 2}
    assert s["parse"]["invalid_json"] == {"prompt": 0, "response_a": 1, "response_b": 0}
    assert s["parse"]["null_turns"] == {"prompt": 1, "response_a": 0, "response_b": 0}
    assert s["parse"]["surrogates"] == {"prompt": 1, "response_a": 0, "response_b": 0}
    d = s["duplicates"]
    assert (d["prompt_rows"], d["prompt_groups"]) == (2, 2)  # "hi there" twice, "other turn two" twice
    assert (d["pair_rows"], d["pair_groups"], d["pairs_swapped"]) == (1, 1, 1)
    assert d["identical_answers"] == 1
    assert s["turns"] == {"1": 4, "2": 3}
    assert s["lengths"]["a_chars"]["max"] == 50 and s["lengths"]["diff_chars"]["min"] == -40
    models = {m["model"]: m for m in s["models"]["table"]}
    assert s["models"]["named_rows"] == 6  # row 6 names no models
    # m1: row1 A lost, row3 A won, row4 B tie, row5 A tie, row7 A won -> 5 battles, 2 wins, 2 ties
    assert (models["m1"]["battles"], models["m1"]["wins"], models["m1"]["ties"]) == (5, 2, 2)
    assert (models["m1"]["win_low"], models["m1"]["win_high"]) == pytest.approx(wilson(2, 5, 0.95))
    assert models["m1"]["win_low"] < 0.4 < models["m1"]["win_high"]
    overlap = result["train_vs_test"]["prompt_overlap"]
    assert overlap == {"test_rows": 4, "test_rows_prompt_in_train": 3}
    md = (out / "data_report.md").read_text()
    assert "## Train vs test" in md and "m1" in md and "![class shares](train_classes.png)" in md


def test_command_without_models_or_source(tmp_path):
    frame = pd.DataFrame([_row(i, [f"p{i}"], ["a" * i], ["b"], i % 3) for i in range(1, 7)]).drop(
        columns=["source", "model_a", "model_b"]
    )
    train = tmp_path / "t.csv"
    frame.to_csv(train, index=False)
    assert main(["--train", str(train), "--out", str(tmp_path / "r")]) == 0
    result = json.loads((tmp_path / "r" / "data_report.json").read_text())
    assert "models" not in result["files"]["train"] and "classes_per_source" not in result["files"]["train"]
    assert "No model_a/model_b columns" in (tmp_path / "r" / "data_report.md").read_text()


def test_bad_file_is_one_line_error(tmp_path, capsys):
    from pipelines.runtime.errors import run_command

    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt\n1,x\n")
    assert run_command(main, ["--train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "missing column" in capsys.readouterr().err
