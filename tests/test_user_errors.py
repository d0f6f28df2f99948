"""Every user error of every command ends in one ``error:`` line on stderr and exit code 2, before any
work: the probe's tracebacks (``--params`` files of several kinds, ``--num-boost-round 0``, ``--groups``,
``--seed -1``, ``--test-labels``, ``predict --source``, encoder base paths, the same ``--extra-train``
twice, a sqlite URL naming a CSV file, ...) and its exit-1 cases (``raise SystemExit("...")``).

In-process: ``run_command(main, argv)`` as ``python -m`` runs it, with the work (features, folds) replaced
by a trap, so a check that comes too late fails the test instead of costing a fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from pipelines import ablation, export_kaggle, full_run, loso, predict, tune
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from stacking.config import StackerConfig
from tests.conftest import make_battles


class WorkStarted(AssertionError):
    """A command got past its checks: the error it should have raised came after the work started."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user_errors")
    paths = {name: root / f"{name}.csv" for name in ("train", "test", "labels", "other_labels", "proba", "extra")}
    make_battles(60, seed=41).to_csv(paths["train"], index=False)
    make_battles(30, seed=42, start_id=5000).to_csv(paths["extra"], index=False)
    test = make_battles(20, seed=43, labelled=False, start_id=9000)
    test.to_csv(paths["test"], index=False)
    make_battles(20, seed=43, start_id=9000)[["id", *CLASS_COLUMNS]].to_csv(paths["labels"], index=False)
    make_battles(20, seed=43, start_id=7000)[["id", *CLASS_COLUMNS]].to_csv(paths["other_labels"], index=False)
    proba = pd.DataFrame({"id": test["id"], **{c: [1 / 3] * len(test) for c in CLASS_COLUMNS}})
    proba.to_csv(paths["proba"], index=False)
    params = {
        "params_list": "[1, 2]",
        "params_no_key": '{"calibration": "temperature"}',
        "params_not_json": "{params: 1",
        "params_not_object": '{"params": [1, 2]}',
        "params_bad_value": '{"params": {"num_leaves": "many"}}',
        "params_bad_calibration": '{"params": {}, "calibration": "isotonic"}',
        "params_latin1": None,
    }
    for name, text in params.items():
        paths[name] = root / f"{name}.json"
        if text is None:
            paths[name].write_bytes('{"params": {}, "note": "caf\xe9"}'.encode("latin-1"))
        else:
            paths[name].write_text(text)
    (root / "a_folder.json").mkdir()
    paths["params_folder"] = root / "a_folder.json"
    return paths


@pytest.fixture(scope="module")
def bundle(files, tmp_path_factory) -> Path:
    from pipelines.model.estimator import ArenaPreferenceModel

    config = StackerConfig(num_boost_round=5, early_stopping_rounds=2, num_threads=1)
    model = ArenaPreferenceModel(n_folds=3, stacker=config, n_jobs=1)
    model.fit(pd.read_csv(files["train"]))
    return model.save(tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(autouse=True)
def trap_work(monkeypatch):
    from features.extractor import FeatureExtractor
    from pipelines.bundle.identity import FINGERPRINT_BATTLES

    def trap(*args, **kwargs):
        raise WorkStarted("the work started before this error was found")

    real_transform = FeatureExtractor.transform

    def transform(self, battles):  # the bundle's feature check on its few fixed battles is not the work
        if battles is FINGERPRINT_BATTLES:
            return real_transform(self, battles)
        trap()

    monkeypatch.setattr(FeatureExtractor, "transform", transform)
    for target in (  # folds and features are the work (the argument and input checks come before them)
        "pipelines.stages.stacker_inputs.load_or_make_folds",
        "pipelines.stages.stacker_inputs.make_folds",
        "pipelines.stages.stacker_inputs.source_fold_frame",
        "pipelines.experiments.loso_study.combined_shared_data",
        "pipelines.model.bundle_scoring.write_submission",
    ):
        monkeypatch.setattr(target, trap)


def _data(files, out: Path) -> list[str]:
    fast = ["--num-boost-round", "5", "--early-stopping-rounds", "2", "--num-threads", "1", "--no-progress"]
    return ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out), "--n-jobs", "1", *fast]


# (case id, command, extra argv built from (files, tmp_path), text the error line must contain)
RUN_CASES = [
    ("params missing", ["--params", "{tmp}/nope.json"], "--params"),
    ("params a folder", ["--params", "{params_folder}"], "a folder"),
    ("params a JSON list", ["--params", "{params_list}"], "expected a JSON object"),
    ("params without params key", ["--params", "{params_no_key}"], "'params'"),
    ("params not JSON", ["--params", "{params_not_json}"], "not valid JSON"),
    ("params params not an object", ["--params", "{params_not_object}"], "'params' is a list"),
    ("params value LightGBM refuses", ["--params", "{params_bad_value}"], "LightGBM refuses"),
    ("params unknown calibration", ["--params", "{params_bad_calibration}"], "calibration 'isotonic'"),
    ("params not UTF-8", ["--params", "{params_latin1}"], "not UTF-8"),
    ("num-boost-round 0", ["--num-boost-round", "0"], "num_boost_round"),
    ("early-stopping-rounds 0", ["--early-stopping-rounds", "0"], "early_stopping_rounds"),
    ("num-threads 0", ["--num-threads", "0"], "num_threads"),
    ("unknown feature group", ["--groups", "length,nosuch"], "--groups"),
    ("empty feature groups", ["--groups", ","], "--groups"),
    ("seed -1", ["--seed", "-1"], "--seed -1"),
    ("seed too large", ["--seed", str(2**32)], "--seed"),
    ("folds 1", ["--folds", "1"], "--folds 1"),
    ("n-jobs 0", ["--n-jobs", "0"], "--n-jobs 0"),
    ("fold-seeds 0", ["--fold-seeds", "0"], "--fold-seeds 0"),
    ("same extra-train twice", ["--extra-train", "{extra}", "--extra-train", "{extra}"], "the same file"),
    ("extra-train is the train file", ["--extra-train", "{train}"], "the same file as --train"),
    ("extra-train missing", ["--extra-train", "{tmp}/nope.csv"], "--extra-train"),
    ("source without comma", ["--source", "p={proba}"], "NAME=OOF,TEST"),
    ("source file not probabilities", ["--source", "p={test},{proba}"], "test.csv: line 1: missing column"),
    ("source OOF file without the train ids", ["--source", "p={proba},{proba}"], "no probabilities for 60 id(s)"),
    ("train without test", None, "both --train and --test"),
]
FULL_RUN_ONLY = [
    ("test-labels missing", ["--test-labels", "{tmp}/nope.csv"], "--test-labels"),
    ("test-labels a battles file without labels", ["--test-labels", "{test}"], "missing column"),
    ("test-labels of other ids", ["--test-labels", "{other_labels}"], "no label for 20 of 20 test id"),
    ("submission a folder", ["--submission", "{tmp}"], "is a folder"),
    ("submission under a file", ["--submission", "{train}/sub.csv"], "--submission"),
    ("time budget negative", ["--time-budget-hours", "-1"], "--time-budget-hours"),
    ("encoder base not a model folder", ["--encoder", "{tmp}"], "not a Hugging Face model folder"),
    ("encoder max length 0", ["--encoder", "{tmp}", "--encoder-max-length", "0"], "max_length 0: must be at least 1"),
    ("encoder precision unknown", ["--encoder", "{tmp}", "--encoder-precision", "fp8"], "precision 'fp8'"),
]
TUNE_ONLY = [
    ("sqlite URL naming a CSV file", ["--storage", "sqlite:///{train}"], "not an SQLite database"),
    ("sqlite URL naming a folder", ["--storage", "sqlite:///{tmp}"], "is a folder"),
    ("n-trials 0", ["--n-trials", "0"], "--n-trials 0"),
    ("timeout -1", ["--timeout", "-1"], "--timeout"),
    ("sampler-seed -1", ["--sampler-seed", "-1"], "--sampler-seed"),
]
ABLATION_ONLY = [
    ("by-source with one source", ["--by-source"], "--by-source needs several sources"),
    ("top-features 0", ["--top-features", "0"], "--top-features 0"),
]
COMMANDS = {"full_run": full_run.main, "tune": tune.main, "ablation": ablation.main}


def _expand(argv: list[str], files, tmp: Path) -> list[str]:
    return [a.format(tmp=tmp, **{k: str(v) for k, v in files.items()}) for a in argv]


def _check_one_line(capsys, code: int, needle: str) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == USER_ERROR_EXIT, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert needle in lines[0], lines[0]
    return lines[0]


def _command_cases():
    for command in COMMANDS:
        only = {"full_run": FULL_RUN_ONLY, "tune": TUNE_ONLY, "ablation": ABLATION_ONLY}[command]
        for case_id, argv, needle in [*RUN_CASES, *only]:
            if command == "tune" and case_id.startswith("params"):
                continue  # tune searches the parameters: it takes no --params
            yield pytest.param(command, argv, needle, id=f"{command}: {case_id}")


@pytest.mark.parametrize(("command", "argv", "needle"), list(_command_cases()))
def test_user_error_is_one_line_exit_2_before_the_work(command, argv, needle, files, tmp_path, capsys):
    out = tmp_path / "run"
    if argv is None:  # --train alone
        full = ["--train", str(files["train"]), "--out", str(out), "--no-progress"]
    else:
        full = [*_data(files, out), *_expand(argv, files, tmp_path)]
    _check_one_line(capsys, run_command(COMMANDS[command], full), needle)
    assert not (out / "submission.csv").exists() and not (out / "model").exists()


PREDICT_CASES = [
    ("source without =", ["--source", "pfile"], "--source expects NAME=PATH"),
    ("source missing file", ["--source", "p={tmp}/nope.csv"], "--source p"),
    ("source not probabilities", ["--source", "p={test}"], "test.csv: line 1: missing column"),
    ("source the model was not trained with", ["--source", "p={proba}"], "trained without that source"),
    ("encoder-base without =", ["--encoder-base", "deberta"], "--encoder-base expects NAME=PATH"),
    ("encoder-base not a model folder", ["--encoder-base", "deberta={tmp}"], "not a Hugging Face model folder"),
    ("encoder-base twice", ["--encoder-base", "d={tmp}", "--encoder-base", "d={tmp}"], "more than once"),
    ("n-jobs 0", ["--n-jobs", "0"], "--n-jobs 0"),
    ("out is a folder", ["--out", "{tmp}"], "is a folder"),
    ("model missing", ["--model", "{tmp}/nope"], "--model"),
    ("model not a bundle", ["--model", "{tmp}"], "not a model bundle"),
    ("test missing", ["--test", "{tmp}/nope.csv"], "--test"),
]


@pytest.mark.parametrize(("argv", "needle"), [pytest.param(a, n, id=i) for i, a, n in PREDICT_CASES])
def test_predict_user_error_is_one_line_exit_2(argv, needle, files, bundle, tmp_path, capsys):
    base = ["--model", str(bundle), "--test", str(files["test"]), "--out", str(tmp_path / "sub.csv"), "--n-jobs", "1"]
    _check_one_line(capsys, run_command(predict.main, [*base, *_expand(argv, files, tmp_path)]), needle)
    assert not (tmp_path / "sub.csv").exists()


def test_predict_encoder_base_for_an_encoder_the_bundle_lacks(files, bundle, tiny_bert, tmp_path, capsys):
    argv = ["--model", str(bundle), "--test", str(files["test"]), "--out", str(tmp_path / "s.csv")]
    code = run_command(predict.main, [*argv, "--encoder-base", f"deberta={tiny_bert}"])
    _check_one_line(capsys, code, "the bundle has no such encoder")


def test_other_commands_exit_2_not_1(files, tmp_path, capsys):
    code = run_command(loso.main, ["--combined", str(files["train"]), "--out", str(tmp_path), "--options", "nosuch"])
    _check_one_line(capsys, code, "--options: unknown option(s) ['nosuch']")
    code = run_command(export_kaggle.main, ["--out", str(tmp_path / "ds"), "--no-download", "--model", str(tmp_path)])
    _check_one_line(capsys, code, "no manifest.json")


def test_debug_shows_the_traceback(files, tmp_path):
    with pytest.raises(ValueError, match="--seed -1"):
        run_command(full_run.main, [*_data(files, tmp_path / "run"), "--seed", "-1", "--debug"])


def test_a_message_given_to_system_exit_also_exits_2(capsys):
    def main(argv):
        raise SystemExit("something the user can fix")

    _check_one_line(capsys, run_command(main, []), "something the user can fix")
    assert np.isfinite(1.0)
