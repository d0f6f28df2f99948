"""full_run with several training sources: extras only train, OOF metrics cover the primary rows, the
saved masked_tie model reproduces the submission; tie handlings no saved model reproduces stop early."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from pipelines import full_run
from pipelines.config.run_config import RunConfig
from pipelines.data.folds import ACROSS_SOURCES
from pipelines.data.run_sources import load_run_train
from pipelines.data.training_sets import TrainingSourcesConfig
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.reports.metrics import multiclass_log_loss
from pipelines.runtime.errors import PreflightError
from stacking.model import StackerModel
from stacking.tie_handling import TieAwareStacker
from tests.conftest import make_battles

FAST = ["--num-boost-round", "20", "--early-stopping-rounds", "5", "--num-threads", "1", "--no-progress"]


def _tieless(n: int, seed: int, start_id: int) -> pd.DataFrame:
    frame = make_battles(n, seed=seed, start_id=start_id)
    return frame[frame["winner_tie"] == 0].reset_index(drop=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ms_data")
    paths = {"train": root / "train.csv", "extra": root / "hh.csv", "test": root / "test.csv"}
    make_battles(150, seed=21).to_csv(paths["train"], index=False)
    _tieless(180, seed=22, start_id=5000).to_csv(paths["extra"], index=False)
    make_battles(40, seed=23, labelled=False, start_id=70000).to_csv(paths["test"], index=False)
    return paths


@pytest.fixture(scope="module")
def run_dir(files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ms_run") / "run"
    args = ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out), "--n-jobs", "1"]
    assert full_run.main([*args, "--extra-train", f"hh={files['extra']}", *FAST]) == 0
    return out


def _proba(path: Path) -> np.ndarray:
    return pd.read_csv(path)[list(CLASS_COLUMNS)].to_numpy()


def test_report_scores_primary_rows_only(run_dir, files):
    report = json.loads((run_dir / "report.json").read_text())
    n_primary = len(pd.read_csv(files["train"]))
    n_extra = len(pd.read_csv(files["extra"]))
    assert report["training_sources"]["rows"] == {"train": n_primary, "hh": n_extra}
    assert report["training_sources"]["scored_rows"] == n_primary
    assert report["training_sources"]["tie_handling"] == "masked_tie"  # "auto" with a tie-less source
    assert set(report["oof_per_source"]) == {"train", "hh"}
    assert report["oof_per_source"]["hh"]["tie_rate"] == 0.0
    for name in ("class prior", "stacker (uncalibrated)", "stacker (calibrated)"):
        assert report["oof"][name]["rows"] == n_primary
    oof = pd.read_csv(run_dir / "oof_stacker.csv", dtype={"id": str})
    assert len(oof) == n_primary + n_extra  # every row trained and has an OOF prediction
    primary = ~oof["id"].str.startswith("hh:")
    y, p = oof["label"].to_numpy(), oof[list(CLASS_COLUMNS)].to_numpy()
    calibrated = report["oof"]["stacker (calibrated)"]["log_loss"]
    assert multiclass_log_loss(y[primary], p[primary]) == pytest.approx(calibrated, abs=1e-6)
    assert multiclass_log_loss(y, p) != pytest.approx(calibrated, abs=1e-4)
    folds = json.loads((run_dir / "folds.json").read_text())
    assert folds["grouping"] == ACROSS_SOURCES  # the several-source grouping, recorded with the folds


def test_prior_fallback_is_the_prior_of_the_primary_rows(files, tmp_path, monkeypatch):
    """The guard compares with the primary rows' prior, so a fallback submits that prior, not one with
    the tie-less extra rows in it (which would pull P(tie) down)."""
    from pipelines.model import run
    from pipelines.model.prior_guard import prior_probabilities

    real_decide = run.decide
    monkeypatch.setattr(run, "decide", lambda stacker, prior, allow: real_decide(prior + 0.5, prior, allow))
    out = tmp_path / "run"
    args = ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out), "--n-jobs", "1"]
    assert full_run.main([*args, "--extra-train", f"hh={files['extra']}", *FAST]) == 0
    assert json.loads((out / "report.json").read_text())["prior_guard"]["use_prior"]
    primary = pd.read_csv(files["train"])[list(CLASS_COLUMNS)].to_numpy().argmax(axis=1)
    extra = pd.read_csv(files["extra"])[list(CLASS_COLUMNS)].to_numpy().argmax(axis=1)
    submitted = _proba(out / "submission.csv")
    np.testing.assert_allclose(submitted, prior_probabilities(primary, len(submitted)))
    pooled = prior_probabilities(np.concatenate([primary, extra]), 1)[0]
    assert submitted[0, 2] > pooled[2] + 0.02  # the tie-less extras would have lowered P(tie)


def test_saved_masked_tie_model_reproduces_submission(run_dir, files, tmp_path):
    from pipelines import predict

    submission = _proba(run_dir / "submission.csv")
    stacker = json.loads((run_dir / "model" / "stacker_features" / "model.json").read_text())
    assert stacker["metadata"]["tie_handling"] == "masked_tie"
    model = ArenaPreferenceModel.load(run_dir / "model")
    np.testing.assert_allclose(model.predict_proba(pd.read_csv(files["test"])), submission, atol=1e-5)
    out = tmp_path / "sub.csv"
    assert predict.main(["--model", str(run_dir / "model"), "--test", str(files["test"]), "--out", str(out)]) == 0
    np.testing.assert_allclose(_proba(out), submission, atol=1e-5)


def test_unsavable_tie_handling_stops_before_any_work(files, tmp_path):
    out = tmp_path / "run"
    args = ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out)]
    with pytest.raises(PreflightError, match="hierarchical"):
        full_run.main([*args, "--extra-train", str(files["extra"]), "--tie-handling", "hierarchical"])
    assert not (out / "folds.csv").exists()
    with pytest.raises(ValueError, match="has_ties_input"):
        StackerModel.from_fold_models([TieAwareStacker("has_ties_input")], None, {})


def test_combined_file_scores_its_sources_with_ties(files, tmp_path):
    """One file with its own ``source`` column: every row trains, the tie-bearing sources are scored."""
    with_ties = make_battles(60, seed=31).assign(source="arena")
    tieless = _tieless(60, seed=32, start_id=9000).assign(source="hh")
    path = tmp_path / "combined.csv"
    pd.concat([with_ties, tieless]).to_csv(path, index=False)
    train, _ = load_run_train(path, TrainingSourcesConfig())
    assert len(train) == len(with_ties) + len(tieless)
    assert train.groupby("source")["is_primary"].all().to_dict() == {"arena": True, "hh": False}
    assert not train.groupby("source")["is_primary"].any()["hh"]
    single, _ = load_run_train(files["train"], TrainingSourcesConfig())
    assert "source" not in single.columns  # one plain file: today's frame


def test_run_config_round_trips_sources():
    config = RunConfig("t.csv", "s.csv", "out")
    config.sources = TrainingSourcesConfig(extra_train=("hh=x.csv:0.2",), fold_seeds=2)
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.sources == config.sources
    assert RunConfig.from_dict({"train_path": "t", "test_path": "s", "out_dir": "o"}).sources == TrainingSourcesConfig()
