"""The run orchestrator (``pipelines.model.run.fit_predict``): it writes the run's set, and the estimator it
drives never sees a test row (the model is fitted on the training battles alone, then scores the test)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from features.extractor import FeatureExtractor
from pipelines.config.run_config import FeatureConfig, RunConfig
from pipelines.model import battles_input, fitting
from pipelines.model import run as run_module
from pipelines.model import scoring as scoring_module
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.model.run import fit_predict
from stacking.config import StackerConfig
from tests.conftest import make_battles

QUICK = StackerConfig(num_boost_round=20, early_stopping_rounds=5, num_threads=1)


@pytest.fixture
def fit_spy(monkeypatch) -> dict:
    """Every frame parsed or featurised while ``fit_steps`` runs is recorded; a test id there fails the test
    at once. Frames seen outside the fit (scoring) are recorded too, so the spy is known to be called."""
    seen: dict = {"in_fit": False, "fit_ids": set(), "other_ids": set(), "steps": 0}

    def record(frame: pd.DataFrame) -> None:
        ids = set(frame["id"].astype(str))
        if seen["in_fit"]:
            leaked = ids & seen["test_ids"]
            assert not leaked, f"test rows reached the fit: {sorted(leaked)[:3]}"
            seen["fit_ids"] |= ids
        else:
            seen["other_ids"] |= ids

    real_steps, real_parse, real_transform = (
        ArenaPreferenceModel.fit_steps,
        battles_input.as_battles,
        FeatureExtractor.transform,
    )

    def fit_steps(self, *args, **kwargs):
        steps = real_steps(self, *args, **kwargs)
        while True:
            seen["in_fit"] = True
            try:
                step = next(steps)
            except StopIteration:
                return
            finally:
                seen["in_fit"] = False
            seen["steps"] += 1
            yield step

    def as_battles(frame, *args, **kwargs):
        record(frame)
        return real_parse(frame, *args, **kwargs)

    def transform(self, battles, *args, **kwargs):
        record(battles)
        return real_transform(self, battles, *args, **kwargs)

    monkeypatch.setattr(ArenaPreferenceModel, "fit_steps", fit_steps)
    for module in (battles_input, fitting, scoring_module, run_module):  # every module that parses battles
        monkeypatch.setattr(module, "as_battles", as_battles)
    monkeypatch.setattr(FeatureExtractor, "transform", transform)
    return seen


@pytest.mark.parametrize("budget", [None, 1.0])
def test_fit_predict_writes_the_run_and_the_fit_never_sees_test(fit_spy, tmp_path, budget):
    train, test = make_battles(90, seed=71), make_battles(25, seed=72, labelled=False, start_id=60000)
    fit_spy["test_ids"] = set(test["id"].astype(str))
    config = RunConfig(
        train_path="train.csv",
        test_path="test.csv",
        out_dir=str(tmp_path / "run"),
        n_folds=3,
        features=FeatureConfig(groups=("length", "formatting"), n_jobs=1),
        stacker=QUICK,
        progress=False,
        time_budget_hours=budget,
    )
    report = fit_predict(train, test, config)

    assert fit_spy["steps"] == 1  # the features-only stacker, the one step without encoders
    assert fit_spy["fit_ids"] == set(train["id"].astype(str))  # the fit saw the training rows...
    assert fit_spy["test_ids"] <= fit_spy["other_ids"]  # ...and the test rows were scored after it
    out = tmp_path / "run"
    submission = pd.read_csv(out / "submission.csv")
    assert submission["id"].astype(str).tolist() == test["id"].astype(str).tolist()
    written = json.loads((out / "report.json").read_text())
    assert written["data"]["test"]["rows"] == len(test) and written["data"]["train"]["rows"] == len(train)
    assert written["plan"]["time_budget_hours"] == budget and len(written["plan"]["submission_writes"]) == 1
    assert ("seconds_left_at_end" in written["plan"]) is (budget is not None)
    assert written["calibration"]["test_choice"]["calibration"] == "in-source"
    assert written["submitted"]["kind"] == "stacker"
    assert written["chosen"]["oof_log_loss"] == pytest.approx(report["chosen"]["oof_log_loss"])
    assert (out / "report.md").exists() and (out / "oof_stacker.csv").exists()
    # the bundle is the model that wrote the submission, and records the test set's calibration
    model = ArenaPreferenceModel.load(out / "model")
    assert model.test_choice_ == written["calibration"]["test_choice"]
    np.testing.assert_allclose(model.predict_proba(test), submission[list(CLASS_COLUMNS)].to_numpy(), atol=1e-8)


def test_fit_takes_no_test_argument():
    """sklearn's shape: ``fit(X, y)``; a second frame as ``test=`` is refused, not silently used."""
    with pytest.raises(TypeError):
        ArenaPreferenceModel().fit(make_battles(5), test=make_battles(5, labelled=False))  # type: ignore[call-arg]


@pytest.mark.slow
def test_data_parallel_encoder_launch_reads_no_test_file(fit_spy, tmp_path):
    """Several workers (a real 2-process launch on the CPU): they are handed the training rows and the number of
    test rows (their time plan reserves the scoring after the fit), never a test row or a test file."""
    from encoders.settings import EncoderConfig

    train, test = make_battles(60, seed=73), make_battles(10, seed=74, labelled=False, start_id=61000)
    fit_spy["test_ids"] = set(test["id"].astype(str))
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    config = RunConfig(
        train_path=str(tmp_path / "train.csv"),
        test_path=str(tmp_path / "test.csv"),
        out_dir=str(tmp_path / "run"),
        n_folds=3,
        features=FeatureConfig(groups=("length",), n_jobs=1),
        stacker=QUICK,
        encoders=[EncoderConfig(model_path=str(tmp_path / "no-model"), name="enc", workers=2)],
        progress=False,
    )
    report = fit_predict(train, test, config)
    work = tmp_path / "run" / "encoder_enc"
    rows = pd.read_parquet(work / "launch_rows.parquet")
    assert set(rows["id"]) == set(train["id"].astype(str)) and not set(rows["id"]) & fit_spy["test_ids"]
    assert json.loads((work / "launch_config.json").read_text())["workers"] == 2
    assert not [p.name for p in (tmp_path / "run").rglob("*.csv") if "test" in p.name]  # no test file was made
    plan = report["plan"]["encoder_runs"]["enc"]
    assert "error" in plan and not plan["finished"]  # the workers found no model: the run went on without it
    assert report["plan"]["encoders_finished"] == [] and report["chosen"]["sources"] == []


def test_the_model_imports_no_report_building_code():
    """The estimator fits; the run report is the run's: importing the model loads no module that builds or
    renders a report (checked in a fresh interpreter, by name). The scores it computes (``reports.metrics``,
    ``reports.source_scoring``) are the one definition every report reads, so the model may use them."""
    import subprocess
    import sys

    code = (
        "import json, sys, pipelines.model.estimator; print(json.dumps([m for m in sys.modules if 'pipelines' in m]))"
    )
    loaded = set(
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    )
    scores = {"pipelines.reports", "pipelines.reports.metrics", "pipelines.reports.source_scoring"}
    builders = {m for m in loaded if "report" in m or "plot" in m} - scores
    assert "pipelines.reports.metrics" in loaded  # the check sees the reports package at all
    assert not builders and "pipelines.model.run" not in loaded, sorted(builders)


def test_fit_takes_data_only_and_a_budget_changes_nothing_without_encoders():
    """Run control is one object the run hands ``fit_steps``: ``fit(X, y)`` has no run arguments, and a budget
    (deadline and test rows) does not change a model whose fit has no encoder to plan."""
    import inspect
    import time

    from pipelines.runtime.run_budget import RunBudget

    assert list(inspect.signature(ArenaPreferenceModel.fit).parameters) == ["self", "X", "y"]
    train, test = make_battles(90, seed=81), make_battles(12, seed=82, labelled=False, start_id=71000)
    params = dict(n_folds=3, feature_groups=("length", "formatting"), stacker=QUICK, n_jobs=1, progress=False)
    plain = ArenaPreferenceModel(**params).fit(train)
    budget = RunBudget(deadline=time.monotonic() + 3600, test_rows=len(test))
    steps = list(ArenaPreferenceModel(**params).fit_steps(train, budget=budget))
    np.testing.assert_array_equal(steps[-1].predict_proba(test), plain.predict_proba(test))
    assert steps[-1].oof_log_loss_ == plain.oof_log_loss_


def test_the_encoders_deadline_keeps_room_for_the_stacker_fits_and_writes_after_them():
    from pipelines.runtime.run_budget import WRITES_S, RunBudget

    assert RunBudget().encoder_deadline(30.0, several_sources=False) is None  # no deadline, no limit
    budget = RunBudget.from_hours(1.0, started=100.0, test_rows=5, clock=lambda: 160.0)
    assert budget.deadline == 3700.0 and budget.seconds_left() == 3540.0
    one, several = budget.encoder_deadline(30.0, False), budget.encoder_deadline(30.0, True)
    assert one is not None and several is not None
    assert several < one < budget.deadline - WRITES_S  # more fits to leave room for with several sources
    assert budget.encoder_deadline(0.0, True) == budget.deadline - WRITES_S
    with pytest.raises(ValueError):
        RunBudget(test_rows=-1)
