import json

import numpy as np
import pandas as pd
import pytest

from pipelines import full_run
from pipelines.config.run_config import RunConfig
from pipelines.model import bundle_scoring
from pipelines.model.run import run
from pipelines.runtime.paths import SAMPLE_DIR
from pipelines.runtime.submission import SubmissionError, write_submission

# fixture-sized data: short boosters, one LightGBM thread (results do not depend on threads)
FAST = ["--num-boost-round", "60", "--early-stopping-rounds", "10", "--num-threads", "1", "--no-progress"]


def _check_submission(path, test_path):
    sub = pd.read_csv(path, dtype={"id": str})
    test = pd.read_csv(test_path, dtype={"id": str})
    assert sub["id"].tolist() == test["id"].tolist()
    p = sub[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.isfinite(p).all() and (p > 0).all() and (p < 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return sub


def test_full_run_then_predict_from_saved_model(train_csv, test_csv, tmp_path):
    out = tmp_path / "run"
    assert (
        full_run.main(["--train", str(train_csv), "--test", str(test_csv), "--out", str(out), "--n-jobs", "1", *FAST])
        == 0
    )
    sub = _check_submission(out / "submission.csv", test_csv)
    report = json.loads((out / "report.json").read_text())
    oof = report["oof"]
    assert oof["stacker (calibrated)"]["log_loss"] < oof["class prior"]["log_loss"]
    assert set(oof["stacker (calibrated)"]["per_fold"]) == {"0", "1", "2", "3", "4"}
    assert report["data"]["train"]["parse"]["invalid_json"]["response_b"] == 1
    assert (out / "report.md").read_text().count("stacker (calibrated)") >= 1
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 240 and folds["fold"].nunique() == 5
    oof_file = pd.read_csv(out / "oof_stacker.csv")
    assert len(oof_file) == 240 and not oof_file.isna().any().any()

    again = bundle_scoring.predict_file(out / "model", test_csv, tmp_path / "again.csv", progress=False, n_jobs=1)
    np.testing.assert_allclose(
        again[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy(),
        sub[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy(),
        atol=1e-7,
    )

    # the run repeats from its report: the saved config rebuilds it, and the figures are the same
    config = RunConfig.from_dict(report["config"])
    assert json.loads(json.dumps(config.to_dict())) == report["config"] and config.stacker.num_boost_round == 60
    config.out_dir = str(tmp_path / "repeat")
    repeated = run(config)
    assert json.loads(json.dumps(repeated["oof"])) == report["oof"] and repeated["chosen"] == report["chosen"]


def test_default_run_uses_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert full_run.main([*FAST, "--test-labels", str(SAMPLE_DIR / "test_labels.csv")]) == 0
    _check_submission(tmp_path / "outputs" / "run" / "submission.csv", SAMPLE_DIR / "test.csv")
    report = json.loads((tmp_path / "outputs" / "run" / "report.json").read_text())
    assert report["holdout"]["stacker (calibrated)"]["rows"] == 100


def test_kaggle_layout_is_discovered(train_csv, test_csv, tmp_path, monkeypatch):
    root = tmp_path / "kaggle"
    comp = root / "input" / "llm-classification-finetuning"
    comp.mkdir(parents=True)
    (root / "working").mkdir()
    for src, name in ((train_csv, "train.csv"), (test_csv, "test.csv")):
        (comp / name).write_bytes(src.read_bytes())
    monkeypatch.setenv("ARENA_PREF_KAGGLE_ROOT", str(root))
    assert full_run.main([*FAST, "--n-jobs", "1"]) == 0
    _check_submission(root / "working" / "submission.csv", test_csv)


def test_submission_writer_refuses_bad_predictions(tmp_path):
    with pytest.raises(SubmissionError, match="NaN"):
        write_submission(["1", "2"], np.array([[0.2, 0.3, 0.5], [np.nan, 0.5, 0.5]]), tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="shape"):
        write_submission(["1", "2"], np.array([[0.2, 0.3, 0.5]]), tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="duplicate"):
        write_submission(["1", "1"], np.full((2, 3), 1 / 3), tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()
    frame = write_submission(["1", "2"], np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]), tmp_path / "s.csv")
    assert frame.iloc[0, 1:].min() > 0  # clipped away from 0 and 1
    _check_submission(tmp_path / "s.csv", tmp_path / "s.csv")


def test_convert_cli_output_feeds_full_run(tmp_path):
    from pipelines.convert import main as convert_main
    from tests.conftest import SHARED_SLICES

    source = SHARED_SLICES / "pandalm" / "testset-v1.json"
    out = tmp_path / "pandalm.csv"
    assert convert_main(["--format", "pandalm", str(source), "--out", str(out)]) == 0
    from pipelines.data.battles import load_battles

    battles, report = load_battles(out)
    assert len(battles) == len(json.loads(source.read_text())) and sum(report.invalid_json.values()) == 0
