"""Issue 26, the settings cases: a replayed run writes its own outputs, LightGBM parameter names are checked,
``--test-calibration new-source`` needs a model that has that calibrator, typed config values, ``data_report``'s
``--out`` and limits, empty ``source`` cells, extra-train weights and an empty ``--groups``.

Each refusal is one ``error:`` line with exit 2, and comes before the work (features and folds are trapped);
one tiny real run and its replay check case 1 end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import data_report, full_run, predict
from pipelines.config.run_config import RunConfig
from pipelines.runtime.config_file import without_run_location
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from stacking.config import StackerConfig
from tests.conftest import ROOT, make_battles
from tests.test_user_errors import bundle, files  # noqa: F401  (module fixtures: a train/test set, a bundle)

SAMPLE = ROOT / "pipelines" / "sample_data" / "train.csv"
FAST = ["--num-boost-round", "20", "--early-stopping-rounds", "5", "--num-threads", "1", "--n-jobs", "1"]


class WorkStarted(AssertionError):
    """The command got past its checks: the refusal came after the work started."""


@pytest.fixture
def trapped(monkeypatch):
    """Features, folds and the submission write raise :class:`WorkStarted` (the bundle's fingerprint check,
    on its own fixed battles, is not the work)."""
    from features.extractor import FeatureExtractor
    from pipelines.bundle.identity import FINGERPRINT_BATTLES

    def trap(*args, **kwargs):
        raise WorkStarted("the work started before the error was found")

    real = FeatureExtractor.transform
    monkeypatch.setattr(
        FeatureExtractor, "transform", lambda self, b: real(self, b) if b is FINGERPRINT_BATTLES else trap()
    )
    for target in (
        "pipelines.stages.stacker_inputs.load_or_make_folds",
        "pipelines.stages.stacker_inputs.make_folds",
        "pipelines.stages.stacker_inputs.source_fold_frame",
        "pipelines.model.bundle_scoring.write_submission",
        "pipelines.data_report.build_report",
    ):
        monkeypatch.setattr(target, trap)


def _exit_code(main, argv: list[str]) -> int:
    """``run_command(main, argv)``'s exit code, an argparse refusal's (``SystemExit(2)``, after usage) too."""
    try:
        return run_command(main, argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _one_line(capsys, code: int, *needles: str) -> str:
    """Exit 2 and one error line (ours, ``error: ...``, or argparse's, ``prog: error: ...``) holding the needles."""
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:") or ": error: " in x]
    assert code == USER_ERROR_EXIT, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _run_args(files, out: Path) -> list[str]:  # noqa: F811  (files: the imported fixture's value)
    return ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out), "--no-progress", *FAST]


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------- case 1: a replayed run


@pytest.fixture
def sample_cut(tmp_path) -> dict[str, Path]:
    """T (100 rows of the bundled sample), T2 (the next 100) and S (20 rows after them, without labels)."""
    frame = pd.read_csv(SAMPLE)
    paths = {name: tmp_path / f"{name}.csv" for name in ("T", "T2", "S")}
    frame.iloc[:100].to_csv(paths["T"], index=False)
    frame.iloc[100:200].to_csv(paths["T2"], index=False)
    frame.iloc[200:220].drop(columns=["winner_model_a", "winner_model_b", "winner_tie"]).to_csv(paths["S"], index=False)
    return paths


def test_replayed_report_writes_its_own_submission_not_the_original_runs(sample_cut, tmp_path):
    """``--config A/report.json --train T2 --out B``: B gets its submission; A's (and its cache) stay A's."""
    first, second = tmp_path / "A", tmp_path / "B"
    a_sub, a_cache = tmp_path / "A_sub.csv", tmp_path / "A_cache"
    settings = _write(tmp_path / "run.json", {"cache_dir": str(a_cache)})
    argv = ["--config", str(settings), "--train", str(sample_cut["T"]), "--test", str(sample_cut["S"])]
    argv += ["--out", str(first), "--submission", str(a_sub), "--folds", "3", "--no-progress", *FAST]
    assert run_command(full_run.main, argv) == 0
    recorded = json.loads((first / "report.json").read_text())["config"]
    assert (recorded["submission_path"], recorded["cache_dir"]) == (str(a_sub), str(a_cache))
    before = a_sub.read_bytes()

    replay = ["--config", str(first / "report.json"), "--train", str(sample_cut["T2"]), "--out", str(second)]
    assert run_command(full_run.main, replay) == 0
    assert a_sub.read_bytes() == before  # the original run's submission is untouched
    assert (second / "submission.csv").is_file()
    again = json.loads((second / "report.json").read_text())["config"]
    assert (again["out_dir"], again["submission_path"], again["cache_dir"]) == (str(second), None, None)
    assert (again["n_folds"], again["stacker"]["num_boost_round"]) == (3, 20)  # the settings are replayed


def test_replaying_a_report_without_out_is_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    report = _write(tmp_path / "report.json", {"oof": {}, "config": {"out_dir": str(tmp_path / "A"), "seed": 3}})
    code = run_command(full_run.main, ["--config", str(report), "--no-progress"])
    _one_line(capsys, code, "report.json", "give --out")
    assert not (tmp_path / "A").exists()


def test_only_the_run_location_fields_are_dropped_from_a_report():
    tree = {"train_path": "t.csv", "test_path": "s.csv", "out_dir": "A", "submission_path": "A_sub.csv"}
    tree |= {"cache_dir": "c", "seed": 3, "extra_sources": {"p": "o.csv,t.csv"}, "features": {"embedder": "m"}}
    kept = without_run_location(tree, RunConfig)
    assert set(tree) - set(kept) == {"out_dir", "submission_path", "cache_dir"}  # inputs are replayed


# ----------------------------------------------------------------------------- case 5: LightGBM parameter names


def test_misspelled_lightgbm_parameter_in_config_is_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    settings = _write(tmp_path / "run.json", {"stacker": {"params": {"learnin_rate": 0.3}}})
    code = run_command(full_run.main, ["--config", str(settings), *_run_args(files, tmp_path / "run")])
    _one_line(capsys, code, f"--config {settings}", "stacker.params", "'learnin_rate'", "'learning_rate'")


def test_misspelled_lightgbm_parameter_in_params_file_is_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    best = _write(tmp_path / "best.json", {"params": {"num_leaves": 7, "lambda_l3": 1.0}})
    code = run_command(full_run.main, ["--params", str(best), *_run_args(files, tmp_path / "run")])
    _one_line(capsys, code, f"--params {best}", "'lambda_l3'", "did you mean")


def test_lightgbm_names_and_aliases_pass_and_the_api_refuses_unknown_ones():
    StackerConfig(params={"learning_rate": 0.1, "eta": 0.1, "reg_lambda": 1.0, "min_child_samples": 5})
    with pytest.raises(ValueError, match="unknown LightGBM parameter 'learnin_rate'"):
        StackerConfig(params={"learnin_rate": 0.3})


# ----------------------------------------------------------------------------- case 7: new-source calibration


def test_full_run_new_source_on_one_source_is_refused_before_the_fit(files, tmp_path, capsys, trapped):  # noqa: F811
    code = run_command(full_run.main, [*_run_args(files, tmp_path / "run"), "--test-calibration", "new-source"])
    _one_line(capsys, code, "--test-calibration new-source", "two or more")


def test_new_source_check_passes_with_two_tie_bearing_sources(tmp_path):
    from pipelines.data.run_sources import load_run_train
    from pipelines.model.run import NewSourceCalibrationError, check_new_source_possible

    frame = pd.concat([make_battles(200, seed=1).assign(source="s1"), make_battles(200, seed=2, start_id=9000)])
    frame.assign(source=["s1"] * 200 + ["s2"] * 200).to_csv(tmp_path / "train.csv", index=False)
    config = RunConfig(str(tmp_path / "train.csv"), "t.csv", "o", test_calibration="new-source")
    train, _ = load_run_train(config.train_path, config.sources)
    check_new_source_possible(config.test_calibration, train)  # two tie-bearing sources of 200 rows: it is made
    with pytest.raises(NewSourceCalibrationError, match="two or more") as info:  # the library names no flag
        check_new_source_possible("new-source", train[train["source"] == "s1"])
    assert isinstance(info.value, ValueError) and "--" not in str(info.value)


def test_predict_new_source_with_a_one_source_bundle_is_refused(files, bundle, tmp_path, capsys, trapped):  # noqa: F811
    argv = ["--model", str(bundle), "--test", str(files["test"]), "--out", str(tmp_path / "sub.csv")]
    code = run_command(predict.main, [*argv, "--test-calibration", "new-source"])
    _one_line(capsys, code, "--test-calibration new-source", "no new-source calibrator")


# ----------------------------------------------------------------------------- case 8: typed config values


def test_unknown_test_calibration_in_config_is_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    settings = _write(tmp_path / "run.json", {"test_calibration": "bogus"})
    code = run_command(full_run.main, ["--config", str(settings), *_run_args(files, tmp_path / "run")])
    _one_line(capsys, code, f"--config {settings}", "test_calibration must be one of", "'bogus'")
    with pytest.raises(ValueError, match="test_calibration"):
        RunConfig("t.csv", "s.csv", "o", test_calibration="bogus")  # type: ignore[arg-type]


def test_one_name_and_one_list_for_the_test_calibration_choice():
    """RunConfig, PredictConfig, the flag and the estimator take the same choices from one place."""
    from typing import get_type_hints

    from pipelines.model.estimator import ArenaPreferenceModel
    from pipelines.model.prediction import PredictConfig
    from stacking.calibration_choice import TEST_CALIBRATIONS, TestCalibration

    assert get_type_hints(RunConfig)["test_calibration"] == get_type_hints(PredictConfig)["test_calibration"]
    assert get_type_hints(RunConfig)["test_calibration"] == TestCalibration
    assert TEST_CALIBRATIONS == ("auto", "in-source", "new-source")
    params = ArenaPreferenceModel().get_params(deep=False)
    assert "test_calibration" in params and "calibration" not in params


# ----------------------------------------------------------------------------- case 9 and data_report's limits


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--out", "{file}"], "--out"),
        (["--min-model-battles", "-3"], "--min-model-battles -3"),
        (["--top-models", "0"], "--top-models 0"),
    ],
)
def test_data_report_refusals(extra, needle, files, tmp_path, capsys, trapped):  # noqa: F811
    file = tmp_path / "taken.txt"
    file.write_text("x")
    argv = ["--train", str(files["train"]), "--out", str(tmp_path / "report"), *extra]
    code = run_command(data_report.main, [a.format(file=file) for a in argv])
    _one_line(capsys, code, needle)
    assert file.read_text() == "x"


# ----------------------------------------------------------------------------- the "also" cases


def _with_sources(path: Path, names: list[str]) -> Path:
    make_battles(len(names), seed=5, start_id=3000).assign(source=names).to_csv(path, index=False)
    return path


def test_empty_source_cells_are_refused_with_file_line_and_column(files, tmp_path, capsys, trapped):  # noqa: F811
    train = _with_sources(tmp_path / "combined.csv", ["s1"] * 30 + [""] + ["s2"] * 29)
    argv = ["--train", str(train), "--test", str(files["test"]), "--out", str(tmp_path / "run"), "--no-progress"]
    line = _one_line(capsys, run_command(full_run.main, argv), str(train), "line 32", "column 'source'")
    assert "empty" in line


def test_empty_source_cells_in_an_extra_file_are_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    extra = _with_sources(tmp_path / "extra.csv", ["x"] * 10 + [""] * 2)
    code = run_command(full_run.main, [*_run_args(files, tmp_path / "run"), "--extra-train", str(extra)])
    _one_line(capsys, code, str(extra), "column 'source'")


def test_a_source_column_empty_in_every_row_is_no_source():
    from pipelines.data.training_sets import pop_own_sources

    battles = pd.DataFrame({"id": ["1", "2"], "source": ["", ""]})
    assert pop_own_sources(battles, "f.csv") is None and "source" not in battles


@pytest.mark.parametrize("weight", ["1e999", "0", "-1", "0e0"])
def test_extra_train_weight_must_be_positive_and_finite(weight, files, tmp_path, capsys, trapped):  # noqa: F811
    spec = f"{files['extra']}:{weight}"
    code = _exit_code(full_run.main, [*_run_args(files, tmp_path / "run"), "--extra-train", spec])
    _one_line(capsys, code, "--extra-train", "positive finite")


def test_extra_train_infinite_weight_in_config_is_refused(files, tmp_path, capsys, trapped):  # noqa: F811
    settings = _write(tmp_path / "run.json", {"sources": {"extra_train": [f"{files['extra']}:1e999"]}})
    code = run_command(full_run.main, ["--config", str(settings), *_run_args(files, tmp_path / "run")])
    _one_line(capsys, code, "weight inf")


@pytest.mark.parametrize("groups", ["", " , "])
def test_empty_groups_is_refused_not_the_default(groups, files, tmp_path, capsys, trapped):  # noqa: F811
    code = run_command(full_run.main, [*_run_args(files, tmp_path / "run"), "--groups", groups])
    _one_line(capsys, code, "--groups", "names no feature group")


@pytest.mark.parametrize("groups", ["", "lenght"])
def test_loso_groups_without_a_known_group_is_refused_before_the_study(groups, tmp_path, capsys, monkeypatch):
    from pipelines import loso
    from pipelines.experiments import loso_study

    def no_study(*args, **kwargs):
        raise AssertionError("the study started")

    monkeypatch.setattr(loso_study, "combined_shared_data", no_study)
    code = run_command(loso.main, ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--groups", groups])
    _one_line(capsys, code, "--groups", "choose from")
