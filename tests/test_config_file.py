"""``--config FILE.json``: every command parses it the same way; flags override it; unknown keys are refused;
a run's report.json reproduces the run's settings; one flag vocabulary (``--folds``) across commands.

Parse only (the command's ``main`` stops right after its parse), except one tiny end-to-end round trip.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import cli
from pipelines.cli import run_config_from_args
from pipelines.runtime import command_setup
from pipelines.runtime.config_file import ConfigFileError
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from tests.test_layers import COMMANDS

RUN_COMMANDS = ("pipelines.full_run", "pipelines.tune", "pipelines.ablation")  # the file is a RunConfig tree
FOLDING = ("pipelines.full_run", "pipelines.tune", "pipelines.ablation", "pipelines.loso")
SYNONYMS = ("--n-folds", "--num-folds", "--nfolds", "--k-folds", "--output", "--output-dir", "--feature-jobs", "--run")


class _Parsed(Exception):
    """Raised by the spy right after a command's parse, carrying what it parsed (no work is done)."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace | None) -> None:
        super().__init__("parsed")
        self.parser, self.namespace = parser, args


def _parse(monkeypatch, command: str, argv: list[str], really: bool = True) -> _Parsed:
    """Run ``command``'s main until its parse; ``really=False``: stop before parsing (its parser only)."""
    module = importlib.import_module(command)
    name = "parse_run_command" if hasattr(module, "parse_run_command") else "parse_command"
    real = getattr(cli if name == "parse_run_command" else command_setup, name)  # not an earlier spy

    def spy(parser, *a, **k):
        raise _Parsed(parser, real(parser, *a, **k) if really else None)

    monkeypatch.setattr(module, name, spy)
    with pytest.raises(_Parsed) as caught:
        module.main(argv)
    return caught.value


def _write(tmp_path: Path, data: dict, name: str = "run.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _own_option(parser: argparse.ArgumentParser, tree: bool) -> argparse.Action:
    """An int option of the command's own (not a RunConfig field), to set from the command's section."""
    from pipelines.cli import RUN_TREE_DESTS, add_data_args

    probe = argparse.ArgumentParser()
    add_data_args(probe)
    tree_dests = {a.dest for a in probe._actions} | RUN_TREE_DESTS if tree else set()
    ints = [
        a
        for a in parser._actions
        if a.option_strings and a.type is int and a.dest not in tree_dests and not a.dest.startswith("encoder_")
    ]
    strings = [a for a in parser._actions if a.option_strings and a.type in (None, str, Path) and a.nargs is None]
    return (ints or [a for a in strings if a.dest not in tree_dests and a.dest not in ("help", "config")])[0]


def test_every_command_parses_through_the_one_path_and_takes_config(monkeypatch):
    assert len(COMMANDS) >= 11
    for command in sorted(COMMANDS):
        parser = _parse(monkeypatch, command, ["--help"], really=False).parser
        assert "--config" in parser.format_help(), command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_section_sets_its_options_and_a_flag_overrides_it(monkeypatch, tmp_path, command):
    parser = _parse(monkeypatch, command, [], really=False).parser
    action = _own_option(parser, command in RUN_COMMANDS)
    section = command.split(".")[1]
    value, other = (7, 9) if action.type is int else ("from-file", "from-flag")
    required = {  # the rest of what the command requires, from the file too
        a.dest: sorted(a.choices)[0] if a.choices else "x"
        for a in parser._actions
        if a.option_strings and a.required and a.dest != action.dest
    }
    path = _write(tmp_path, {section: {action.dest: value, **required}})
    positional = ["in.csv"] if command == "pipelines.convert" else []  # a positional is never read from the file
    args = _parse(monkeypatch, command, ["--config", str(path), *positional]).namespace
    assert getattr(args, action.dest) in (value, Path(str(value)))
    flag = action.option_strings[0]
    args = _parse(monkeypatch, command, ["--config", str(path), *positional, flag, str(other)]).namespace
    assert getattr(args, action.dest) in (other, Path(str(other)))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_key_is_refused_with_the_file_and_the_key(monkeypatch, tmp_path, command):
    section = command.split(".")[1]
    path = _write(tmp_path, {section: {"no_such_option": 1}})
    with pytest.raises(ConfigFileError, match=rf"--config {path}: unknown key '{section}.no_such_option'"):
        _parse(monkeypatch, command, ["--config", str(path)])
    path = _write(tmp_path, {"no_such_section": {}}, "top.json")
    with pytest.raises(ConfigFileError, match=f"--config {path}: unknown key 'no_such_section'"):
        _parse(monkeypatch, command, ["--config", str(path)])


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_a_run_config_tree_sets_the_run_and_flags_override_it(monkeypatch, tmp_path, command, train_csv, test_csv):
    tree = {
        "train_path": str(train_csv),
        "test_path": str(test_csv),
        "out_dir": str(tmp_path / "run"),
        "n_folds": 3,
        "seed": 7,
        "features": {"groups": ["default", "sentiment"], "n_jobs": 1},
        "stacker": {"num_boost_round": 40, "calibration": "vector", "num_threads": 1},
        "sources": {"fold_seeds": 2},
    }
    path = _write(tmp_path, tree)
    config = run_config_from_args(_parse(monkeypatch, command, ["--config", str(path)]).namespace)
    assert (config.n_folds, config.seed, config.features.n_jobs, config.sources.fold_seeds) == (3, 7, 1, 2)
    assert config.features.groups[-1] == "sentiment" and "length" in config.features.groups
    assert (config.stacker.num_boost_round, config.stacker.calibration) == (40, "vector")
    assert config.train_path == str(train_csv)
    argv = ["--config", str(path), "--folds", "4", "--seed", "8", "--num-boost-round", "50", "--fold-seeds", "1"]
    config = run_config_from_args(_parse(monkeypatch, command, argv).namespace)
    assert (config.n_folds, config.seed, config.stacker.num_boost_round, config.sources.fold_seeds) == (4, 8, 50, 1)
    assert config.stacker.calibration == "vector"  # not given as a flag: the file's


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"stacker": {"num_boost_rounds": 5}}, "stacker.num_boost_rounds"),
        ({"features": {"group": ["length"]}}, "features.group"),
        ({"encoders": [{"model_path": "m", "max_len": 3}]}, r"encoders\[0\].max_len"),
        ({"n_fold": 3}, "n_fold"),
    ],
)
def test_an_unknown_key_anywhere_in_the_run_tree_is_refused(monkeypatch, tmp_path, tree, key):
    path = _write(tmp_path, tree)
    with pytest.raises(ConfigFileError, match=rf"--config {path}: unknown key '{key}'"):
        _parse(monkeypatch, "pipelines.full_run", ["--config", str(path)])


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"n_folds": "five"}, "n_folds must be an integer, got 'five'"),
        ({"stacker": {"calibration": "platt"}}, "stacker.calibration must be one of"),
        ({"features": {"groups": ["length", 3]}}, "features.groups must be a list"),
        ({"features": []}, "features must be a JSON object"),
        ({"time_budget_hours": "soon"}, "time_budget_hours must be a number or null"),
        ({"encoders": [{"model_path": "m", "lora": "yes"}]}, r"encoders\[0\].lora must be true or false"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_before_any_work(monkeypatch, tmp_path, tree, message):
    path = _write(tmp_path, tree)
    with pytest.raises(ConfigFileError, match=message):
        _parse(monkeypatch, "pipelines.full_run", ["--config", str(path)])


def test_a_bad_config_ends_the_command_with_one_line_and_exit_2(tmp_path, capsys):
    from pipelines import full_run, loso

    path = _write(tmp_path, {"stacker": {"num_boost_rounds": 5}})
    assert run_command(full_run.main, ["--config", str(path)]) == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "stacker.num_boost_rounds" in err
    path = _write(tmp_path, {"loso": {"folds": "five"}}, "loso.json")
    assert run_command(loso.main, ["--config", str(path), "--out", str(tmp_path)]) == USER_ERROR_EXIT
    assert "loso.folds must be an integer" in capsys.readouterr().err
    assert run_command(full_run.main, ["--config", str(tmp_path / "missing.json")]) == USER_ERROR_EXIT
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("command", FOLDING)
def test_folds_is_one_flag_everywhere(monkeypatch, command):
    parser = _parse(monkeypatch, command, [], really=False).parser
    assert "--folds" in parser._option_string_actions, command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_spells_a_setting_another_way(monkeypatch, command):
    parser = _parse(monkeypatch, command, [], really=False).parser
    assert not set(SYNONYMS) & set(parser._option_string_actions), command


def test_a_runs_report_json_reproduces_its_config_and_submission(tmp_path, train_csv, test_csv):
    """The tiny end-to-end: a run, then a rerun with ``--config <run>/report.json`` into another folder."""
    from pipelines import full_run

    fast = ["--num-boost-round", "20", "--early-stopping-rounds", "5", "--num-threads", "1", "--n-jobs", "1"]
    first = tmp_path / "first"
    argv = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(first), "--folds", "3", "--seed", "5"]
    assert full_run.main([*argv, "--no-progress", "--calibration", "none", *fast]) == 0
    second = tmp_path / "second"
    assert full_run.main(["--config", str(first / "report.json"), "--out", str(second)]) == 0
    before, after = (json.loads((d / "report.json").read_text())["config"] for d in (first, second))
    assert after.pop("out_dir") == str(second) and before.pop("out_dir") == str(first)
    assert before == after
    assert (before["n_folds"], before["seed"], before["stacker"]["calibration"]) == (3, 5, "none")
    pd.testing.assert_frame_equal(pd.read_csv(first / "submission.csv"), pd.read_csv(second / "submission.csv"))
