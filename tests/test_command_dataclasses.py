"""``pipelines.loso`` and ``pipelines.predict`` take their options from dataclasses (``LosoConfig``,
``PredictConfig``): every flag is a field, the ``--config`` section is checked against those flags (unknown key,
wrong JSON kind: one line naming the file and the key), and the library gets the dataclass. ``train_encoder``'s
time budget is in hours, as full_run's; ``--seconds`` is a deprecated alias.

Parse and settings only: the study and the scoring are replaced by spies (no data is read).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from pipelines import loso, predict, train_encoder
from pipelines.cli import field_default
from pipelines.experiments.loso_study import LosoConfig
from pipelines.model.prediction import PredictConfig, named_paths
from pipelines.runtime.errors import USER_ERROR_EXIT, UsageError, run_command
from stacking.config import STUDY_PRESET
from stacking.tie_registry import option_names

PREDICT_REQUIRED = {"model": "m", "test": "t.csv", "out": "o.csv"}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("cls", "build"), [(LosoConfig, loso.build_parser), (PredictConfig, predict.build_parser)])
def test_every_field_is_a_flag_with_its_help_default_and_requiredness(cls, build):
    actions = {a.dest: a for a in build()._actions}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        action = actions[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")  # a bool field: also --no-<name>
        assert f.metadata["help"] in action.help
        default = field_default(f)
        assert action.required == (default is dataclasses.MISSING), f.name
        if not action.required:  # the parser carries the field's default (a repeatable flag's as a list)
            assert action.default == ((list(default) or None) if isinstance(default, tuple) else default), f.name


def test_the_loso_defaults_are_the_study_preset():
    config = LosoConfig(combined=Path("c.csv"), out=Path("o"))
    assert config.option_list() == list(option_names()) == config.oof_option_list()
    assert config.holdout_list() is None and config.folds == STUDY_PRESET.n_folds
    preset = {**STUDY_PRESET.stacker_settings(), "tieless_weight": STUDY_PRESET.tieless_weight}
    assert json.dumps(config.stacker_settings()) == json.dumps(preset)  # key order too: the report's "settings"
    assert config.feature_config().groups == config.feature_groups() and "length" in config.feature_groups()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"combined": None}, "give one of --data and --combined"),
        ({"data": "shared"}, "give one of --data and --combined"),
        ({"options": "plain,nosuch"}, "--options: unknown option(s) ['nosuch']"),
        ({"oof_options": "plian"}, "--oof-options: unknown option(s) ['plian']"),
        ({"folds": 1}, "--folds 1: must be at least 2"),
        ({"fold_seeds": 0}, "--fold-seeds 0: must be at least 1"),
    ],
)
def test_a_loso_config_that_cannot_work_is_refused(changes, message):
    with pytest.raises(ValueError) as caught:
        LosoConfig(**{"combined": "c.csv", "out": "o", **changes})
    assert message in str(caught.value)


def test_loso_hands_the_study_the_file_then_the_flags(tmp_path, monkeypatch):
    seen = []

    def study(config, command):
        seen.append(config)
        return {"macro": {}}, {"md": tmp_path / "loso.md"}

    monkeypatch.setattr(loso, "run_study", study)
    section = {"combined": "all.csv", "out": str(tmp_path), "options": "plain,masked_tie", "fold_seeds": 2}
    path = _write(tmp_path, {"loso": {**section, "holdouts": "pandalm", "oof_options": "", "tfidf": True}})
    assert loso.main(["--config", str(path), "--fold-seeds", "1", "--groups", "length"]) == 0
    (config,) = seen
    assert (config.combined, config.out, config.fold_seeds) == (Path("all.csv"), tmp_path, 1)  # the flag wins
    assert config.option_list() == ["plain", "masked_tie"] and config.oof_option_list() == []
    assert config.holdout_list() == ["pandalm"] and config.feature_groups() == ("length",)
    assert config.feature_config().tfidf and config.feature_config().groups == ("length",)


@pytest.mark.parametrize(
    ("command", "section", "message"),
    [
        ("loso", {"out": 5, "combined": "c.csv"}, "loso.out must be a string, got 5"),
        ("loso", {"options": ["plain"], "out": "o", "combined": "c.csv"}, "loso.options must be a string"),
        ("loso", {"fold_seeds": 1.5, "out": "o", "combined": "c.csv"}, "loso.fold_seeds must be an integer"),
        ("loso", {"tfidf": "yes", "out": "o", "combined": "c.csv"}, "loso.tfidf must be true or false"),
        ("loso", {"folds": 5, "fold": 3}, "unknown key 'loso.fold'"),
        ("predict", {**PREDICT_REQUIRED, "model": 3}, "predict.model must be a string, got 3"),
        ("predict", {**PREDICT_REQUIRED, "source": "a=b.csv"}, "predict.source must be a list of strings"),
        ("predict", {**PREDICT_REQUIRED, "n_jobs": "2"}, "predict.n_jobs must be an integer"),
        ("predict", {**PREDICT_REQUIRED, "stacker": "both"}, "predict.stacker: 'both' is not one of"),
        ("predict", {**PREDICT_REQUIRED, "features_only": 1}, "predict.features_only must be true or false"),
        ("predict", {**PREDICT_REQUIRED, "encoder": ["x"]}, "unknown key 'predict.encoder'"),
    ],
)
def test_a_section_value_of_the_wrong_kind_ends_in_one_line(command, section, message, tmp_path, capsys):
    path = _write(tmp_path, {command: section})
    main = {"loso": loso.main, "predict": predict.main}[command]
    assert run_command(main, ["--config", str(path)]) == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--config {path}" in err[0] and message in err[0], err


def test_predict_config_reads_its_named_paths():
    config = PredictConfig(**PREDICT_REQUIRED, source=("lp=p.csv",), encoder_base=["deberta=/kaggle/input/d"])
    assert config.sources == {"lp": "p.csv"} and config.encoder_base_paths == {"deberta": "/kaggle/input/d"}
    assert config.encoder_base == ("deberta=/kaggle/input/d",)  # a list from Python code is kept as a tuple
    assert (config.test_calibration, config.stacker, config.n_jobs) == ("auto", None, 2)
    assert named_paths(("a=x=y",), "--source") == {"a": "x=y"}
    for specs, message in ((("=x",), "expects NAME=PATH"), (("a=",), "expects NAME=PATH"), (("a=x", "a=y"), "twice")):
        with pytest.raises(ValueError, match=message.replace("twice", "given more than once")):
            PredictConfig(**PREDICT_REQUIRED, source=specs)
    with pytest.raises(ValueError, match="--n-jobs 0"):
        PredictConfig(**PREDICT_REQUIRED, n_jobs=0)
    with pytest.raises(ValueError, match="calibration must be one of"):
        PredictConfig(**PREDICT_REQUIRED, test_calibration="platt")  # type: ignore[arg-type]


def test_predict_flags_override_the_section_and_a_repeatable_flag_replaces_its_list(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(predict, "check_predict_inputs", lambda config: None)
    monkeypatch.setattr(predict, "predict", lambda config: seen.append(config) or [])
    section = {**PREDICT_REQUIRED, "source": ["a=file.csv"], "n_jobs": 1, "test_calibration": "in-source"}
    path = _write(tmp_path, {"predict": section})
    assert predict.main(["--config", str(path)]) == 0
    assert predict.main(["--config", str(path), "--source", "b=x.csv", "--source", "c=y.csv", "--features-only"]) == 0
    from_file, from_flags = seen
    assert from_file.source == ("a=file.csv",) and (from_file.n_jobs, from_file.test_calibration) == (1, "in-source")
    assert from_flags.sources == {"b": "x.csv", "c": "y.csv"} and from_flags.features_only
    assert dataclasses.replace(from_flags, source=(), features_only=False) == dataclasses.replace(from_file, source=())


def test_train_encoder_budget_is_in_hours_and_seconds_is_a_deprecated_alias(caplog):
    assert train_encoder.budget_seconds(None, None) is None
    assert train_encoder.budget_seconds(0.5, None) == 1800.0
    with caplog.at_level(logging.WARNING, logger="arena_pref"):
        assert train_encoder.budget_seconds(None, 900.0) == 900.0
    (warning,) = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert "--time-budget-hours 0.25" in warning and "\n" not in warning
    with pytest.raises(UsageError, match="not both"):
        train_encoder.budget_seconds(0.5, 900.0)
    with pytest.raises(UsageError, match="--time-budget-hours -1: must be 0 or more"):
        train_encoder.budget_seconds(-1.0, None)


def test_train_encoder_with_both_budgets_ends_in_one_line_before_reading_data(tmp_path, capsys):
    argv = ["--run-dir", str(tmp_path), "--train", str(tmp_path / "none.csv"), "--model", str(tmp_path)]
    code = run_command(train_encoder.main, [*argv, "--seconds", "60", "--time-budget-hours", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == USER_ERROR_EXIT and err == ["error: give --time-budget-hours or --seconds (deprecated), not both"]
