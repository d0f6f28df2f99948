"""pipelines.tune: a real (SQLite) Optuna study on fixture data, its output, resume and pruning."""

import json

import numpy as np
import optuna
import pytest

from pipelines import full_run, tune
from pipelines.cli import run_config_from_args
from pipelines.config.params_file import load_params_file
from pipelines.experiments import tune as tune_engine
from pipelines.model.model_inputs import model_inputs
from pipelines.runtime.errors import UsageError
from stacking.calibration import ProbabilityCalibrator
from stacking.cross_fit import fit_calibrated
from stacking.metrics import multiclass_log_loss
from stacking.tuning import evaluate_stacker, searched_config, split_trial_params
from tests.conftest import make_battles

FAST = [
    "--num-boost-round",
    "40",
    "--early-stopping-rounds",
    "8",
    "--num-threads",
    "1",
    "--no-progress",
    "--n-jobs",
    "1",
]


@pytest.fixture
def data(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    make_battles(200, seed=3).to_csv(train, index=False)
    make_battles(30, seed=4, labelled=False, start_id=90000).to_csv(test, index=False)
    return ["--train", str(train), "--test", str(test)]


def _load(out):
    return optuna.load_study(study_name="stacker", storage=f"sqlite:///{out / 'optuna.db'}")


def _config(data, out):
    args = tune.build_parser().parse_args([*data, "--out", str(out), "--seed", "7", *FAST])
    return run_config_from_args(args)


def test_tune_writes_best_params_that_full_run_uses_and_resumes(data, tmp_path):
    out = tmp_path / "tune"
    assert tune.main([*data, "--out", str(out), "--n-trials", "3", "--seed", "7", *FAST]) == 0
    best = load_params_file(out / "best_params.json")
    assert best["n_trials"] == 3 and best["study"] == "stacker"
    assert best["calibration"] in ProbabilityCalibrator.KINDS
    assert best["value"] <= best["baseline_value"]
    for name in ("optuna.db", "folds.csv", "tuning_report.md", "optimization_history.png"):
        assert (out / name).exists(), name
    study = _load(out)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert (out / "param_importances.png").exists() == (len(complete) >= 2)
    report = (out / "tuning_report.md").read_text()
    assert f"{best['value']:.5f}" in report and f"{best['baseline_value']:.5f}" in report

    # the objective is the calibrated nested OOF loss of fit_calibrated, the fit full_run and ablation use
    trial = min(complete, key=lambda t: t.value)
    params, calibration = split_trial_params(trial.params)
    config = _config(data, out)
    inputs = model_inputs(config).inputs
    fit = fit_calibrated(
        inputs.X, inputs.y, inputs.folds, searched_config(config.stacker, params, calibration), 7, groups=inputs.groups
    )
    y, folds = inputs.y, inputs.folds
    assert multiclass_log_loss(y, fit.oof_cal) == pytest.approx(trial.value, abs=1e-12)
    per_fold = [multiclass_log_loss(y[folds == k], fit.oof_cal[folds == k]) for k in range(5)]
    assert per_fold == pytest.approx(trial.user_attrs["per_fold"], abs=1e-12)

    # full_run takes the file as it is
    run_dir = tmp_path / "run"
    assert (
        full_run.main([*data, "--out", str(run_dir), "--params", str(out / "best_params.json"), "--seed", "7", *FAST])
        == 0
    )
    run_report = json.loads((run_dir / "report.json").read_text())
    assert run_report["stacker"]["params"] == best["params"]
    assert run_report["calibration"]["kind"] == best["calibration"]

    # resume: same storage and study name, two more trials, the first three kept as they were
    first = [(t.number, t.params, t.value, t.state) for t in study.trials]
    assert tune.main([*data, "--out", str(out), "--n-trials", "2", "--seed", "7", *FAST]) == 0
    study = _load(out)
    assert len(study.trials) == 5
    assert [(t.number, t.params, t.value, t.state) for t in study.trials[:3]] == first
    assert all(t.params not in [f[1] for f in first] for t in study.trials[3:])  # no replayed startup trials
    resumed = load_params_file(out / "best_params.json")
    assert resumed["n_trials"] == 5 and resumed["value"] <= best["value"]
    assert study.user_attrs["baseline"]["log_loss"] == best["baseline_value"]  # computed once, kept


def test_resuming_on_other_data_is_refused(data, tmp_path):
    out = tmp_path / "tune"
    assert tune.main([*data, "--out", str(out), "--n-trials", "1", *FAST]) == 0
    other = tmp_path / "other.csv"
    make_battles(150, seed=9).to_csv(other, index=False)
    with pytest.raises(UsageError, match="other data"):
        tune.main(
            [
                "--train",
                str(other),
                "--test",
                data[3],
                "--out",
                str(tmp_path / "other_run"),
                "--storage",
                f"sqlite:///{out / 'optuna.db'}",
                "--n-trials",
                "1",
                *FAST,
            ]
        )


def test_running_loss_is_reported_per_fold_and_pruning_stops_a_trial(data, tmp_path):
    out = tmp_path / "tune"
    config = _config(data, out)
    inputs = model_inputs(config).inputs
    seen = []
    result = evaluate_stacker(
        inputs.X,
        inputs.y,
        inputs.folds,
        inputs.groups,
        config.stacker,
        config.seed,
        lambda value, step: seen.append((step, value)),
    )
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[-1][1] == pytest.approx(result.log_loss, abs=1e-12)  # last report == the objective

    # a pruner that always prunes: the trial ends after its first fold, marked PRUNED in the database
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'prune.db'}",
        study_name="p",
        pruner=optuna.pruners.ThresholdPruner(upper=0.0),
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    study.optimize(
        tune_engine.make_objective(tune_engine.Evaluation.of(model_inputs(config), config), config), n_trials=1
    )
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert np.isfinite(trial.intermediate_values[0])


def _draw(trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0) + trial.suggest_int("n", 0, 10**6)


def test_workers_on_one_study_never_repeat_trials(tmp_path):
    """The interleaving that collided under ``seed + len(study.trials)``: the seed-101 worker opens the study
    first, the seed-100 worker one trial later. Streams come from (seed, trial number) instead: distinct
    trials for different seeds, for the same seed and for a resumed worker; reproducible per number."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    late = tune_engine.TuneConfig(pruner_startup_trials=5)
    w1 = tune_engine.open_study(storage, "s", 101, late)
    w1.optimize(_draw, n_trials=1)
    w0 = tune_engine.open_study(storage, "s", 100, late)
    for _ in range(2):
        w0.optimize(_draw, n_trials=1)
        w1.optimize(_draw, n_trials=1)
    tune_engine.open_study(storage, "s", 100, late).optimize(_draw, n_trials=2)  # resumed, same seed as w0
    twin = tune_engine.open_study(storage, "s", 100, late)  # a second worker given the same seed by mistake
    twin.optimize(_draw, n_trials=2)
    params = [tuple(sorted(t.params.items())) for t in twin.trials]
    assert len(params) == 9 and len(set(params)) == 9

    replay = optuna.create_study(sampler=tune_engine.TrialSeededTPESampler(100))  # same seed, same numbers: same trials
    replay.optimize(_draw, n_trials=3)
    fresh = optuna.create_study(sampler=tune_engine.TrialSeededTPESampler(100))
    fresh.optimize(_draw, n_trials=3)
    assert [t.params for t in replay.trials] == [t.params for t in fresh.trials]
