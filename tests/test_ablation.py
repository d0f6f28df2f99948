"""pipelines.ablation: files, figures equal to an independent recomputation, determinism."""

import json

import numpy as np
import pytest

from features.extractor import group_columns
from features.groups import DEFAULT_GROUPS
from pipelines import ablation
from pipelines.cli import run_config_from_args
from pipelines.experiments import ablation as ablation_engine
from pipelines.model.model_inputs import model_inputs
from pipelines.reports.metrics import multiclass_log_loss
from stacking.calibration import cross_calibrate
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit
from tests.conftest import length_proba_file, make_battles

FAST = [
    "--num-boost-round",
    "20",
    "--early-stopping-rounds",
    "5",
    "--num-threads",
    "1",
    "--no-progress",
    "--n-jobs",
    "1",
]


@pytest.fixture
def args(tmp_path):
    train_frame, test_frame = make_battles(100, seed=5), make_battles(20, seed=6, labelled=False, start_id=90000)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train_frame.to_csv(train, index=False)
    test_frame.to_csv(test, index=False)
    oof = length_proba_file(train_frame, tmp_path / "oof.csv")
    test_proba = length_proba_file(test_frame, tmp_path / "t.csv")
    return ["--train", str(train), "--test", str(test), "--source", f"lenprior={oof},{test_proba}", *FAST]


def test_ablation_report_equals_recomputation_and_is_deterministic(args, tmp_path):
    out = tmp_path / "run"
    assert ablation.main([*args, "--out", str(out)]) == 0
    folder = out / "ablation"
    for name in (
        "ablation.json",
        "ablation.md",
        "ablation.html",
        "ablation.png",
        "importance_top.png",
        "importance_groups.png",
        "reliability.png",
        "verbosity.png",
        "position.png",
    ):
        assert (folder / name).stat().st_size > 0, name
    report = json.loads((folder / "ablation.json").read_text())
    assert list(report["groups"]) == [*DEFAULT_GROUPS, "source:lenprior"]
    assert set(report["variants"]) == {"full", *(f"{k}:{g}" for g in report["groups"] for k in ("drop", "only"))}
    assert '<img src="ablation.png"' in (folder / "ablation.html").read_text()

    # recompute the full model and one drop-one variant with cross_fit + cross_calibrate
    config = run_config_from_args(ablation.build_parser().parse_args([*args, "--out", str(out)]))
    inputs = model_inputs(config).inputs
    y, folds = inputs.y, inputs.folds
    formatting = set(group_columns(inputs.X.columns)["formatting"])
    per_fold = {}
    for name, cols in (
        ("full", list(inputs.X.columns)),
        ("drop:formatting", [c for c in inputs.X.columns if c not in formatting]),
    ):
        result = cross_fit(
            inputs.X[cols],
            y,
            folds,
            inputs.groups,
            config=StackerConfig(num_boost_round=20, early_stopping_rounds=5, num_threads=1),
            seed=config.seed,
        )
        calibrated, _ = cross_calibrate(result.oof, y, folds, "temperature")
        per_fold[name] = [multiclass_log_loss(y[folds == k], calibrated[folds == k]) for k in range(5)]
        assert report["variants"][name]["per_fold"] == pytest.approx(per_fold[name], abs=1e-12)
        assert report["variants"][name]["log_loss"] == pytest.approx(multiclass_log_loss(y, calibrated), abs=1e-12)
    diff = report["variants"]["drop:formatting"]["diff_vs_full"]
    expected = np.subtract(per_fold["drop:formatting"], per_fold["full"])
    assert diff["per_fold"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert diff["mean"] == pytest.approx(expected.mean()) and diff["std"] == pytest.approx(expected.std(ddof=1))
    assert f"{report['variants']['full']['log_loss']:.4f}" in (folder / "ablation.md").read_text()

    # verbosity buckets use the length group's logratio_chars; the stacker is exactly swap-symmetric
    np.testing.assert_allclose(ablation_engine.length_log_ratio(inputs.train), inputs.X["logratio_chars"], atol=1e-5)
    assert sum(b["n"] for b in report["verbosity"]) == len(y)
    assert report["position"]["max_swap_gap"] < 1e-12

    # a second run (fresh run directory, so folds are remade from the seed) writes the same JSON
    assert ablation.main([*args, "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "ablation" / "ablation.json").read_text() == (folder / "ablation.json").read_text()


def test_feature_groups_keep_pairs_whole_and_sources_apart():
    columns = [
        "a_chars",
        "b_chars",
        "diff_chars",
        "logratio_chars",
        "prompt_chars",
        "a_bold",
        "b_bold",
        "diff_bold",
        "logratio_bold",
        "a_enc_x",
        "b_enc_x",
        "diff_enc_x",
        "pair_enc_x_tie",
    ]
    groups = ablation_engine.feature_groups(columns)
    assert groups == {
        "length": ["a_chars", "b_chars", "diff_chars", "logratio_chars", "prompt_chars"],
        "formatting": ["a_bold", "b_bold", "diff_bold", "logratio_bold"],
        "source:x": ["a_enc_x", "b_enc_x", "diff_enc_x", "pair_enc_x_tie"],
    }
    variants = ablation_engine.variant_columns(columns, groups)
    assert variants["drop:source:x"] == columns[:9] and variants["only:formatting"] == columns[5:9]
