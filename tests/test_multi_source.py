"""The one stacker path with several sources: init scores, tie handling "auto", calibration on
scored rows, the unchanged default path, repeated grouped CV in ablation, --extra-train parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arena_schema import swap_feature_frame, swap_proba
from pipelines.data.battles import load_battles
from stacking.calibration import cross_calibrate
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit, fit_calibrated
from stacking.lgbm import LGBMStacker
from stacking.tie_handling import resolve_tie_handling
from tests.conftest import make_battles

QUICK = StackerConfig(num_boost_round=30, early_stopping_rounds=5, num_threads=1, params={"learning_rate": 0.2})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from features.extractor import FeatureExtractor

    path = tmp_path_factory.mktemp("d") / "b.csv"
    make_battles(240, seed=7).to_csv(path, index=False)
    battles, _ = load_battles(path)
    X = FeatureExtractor(groups=["length", "formatting"], n_jobs=1, progress=False).transform(battles)
    folds = np.arange(len(battles)) % 4
    return battles, X, battles["label"].to_numpy(), folds


def test_init_score_swapped_copy_gets_swapped_scores_and_prediction_stays_symmetric(data):
    _, X, y, _ = data
    rng = np.random.default_rng(0)
    init = rng.normal(0, 1, size=(len(y), 3))
    model = LGBMStacker(seed=0, config=QUICK).fit(X, y, init_score=init)
    p = model.predict_proba(X)
    np.testing.assert_allclose(model.predict_proba(swap_feature_frame(X)), swap_proba(p), atol=1e-12)
    # the swapped copy of each row starts from that row's init score with the A and B columns exchanged
    values = X.to_numpy(dtype=np.float32)
    dataset = model._dataset(values, y, None, init).construct()
    stored = np.asarray(dataset.get_init_score())
    stored = stored if stored.ndim == 2 else stored.reshape(3, -1).T  # 1-D: LightGBM's class-major order
    np.testing.assert_array_equal(stored, np.vstack([init, init[:, [1, 0, 2]]]))
    np.testing.assert_array_equal(dataset.get_label(), np.concatenate([y, np.array([1, 0, 2])[y]]))
    assert not np.allclose(LGBMStacker(seed=0, config=QUICK).fit(X, y).predict_proba(X), p)  # init matters
    with pytest.raises(ValueError):
        LGBMStacker(seed=0, config=QUICK).fit(X, y, init_score=init[:-1])


def test_auto_tie_handling_resolves_and_config_validates():
    assert resolve_tie_handling("auto", None) == "plain"
    assert resolve_tie_handling("auto", np.zeros(4, dtype=bool)) == "plain"
    assert resolve_tie_handling("auto", np.array([False, True])) == "masked_tie"
    assert resolve_tie_handling("hierarchical", np.array([False, True])) == "hierarchical"
    assert StackerConfig().tie_handling == "auto"
    with pytest.raises(ValueError):
        StackerConfig(tie_handling="nope")


def test_default_path_is_bit_identical(data):
    _, X, y, folds = data
    before = fit_calibrated(X, y, folds, QUICK, 3)
    after = fit_calibrated(X, y, folds, QUICK, 3, tieless=None, scored=None, sample_weight=None)
    tieful = fit_calibrated(X, y, folds, QUICK, 3, tieless=np.zeros(len(y), dtype=bool))  # auto -> plain
    np.testing.assert_array_equal(before.raw.oof, after.raw.oof)
    np.testing.assert_array_equal(before.oof_cal, after.oof_cal)
    np.testing.assert_array_equal(before.raw.oof, tieful.raw.oof)
    plain = cross_fit(X, y, folds, config=QUICK, seed=3)
    np.testing.assert_array_equal(before.raw.oof, plain.oof)


def test_calibration_sees_only_scored_rows(data):
    _, X, y, folds = data
    scored = np.arange(len(y)) % 3 != 0
    config = StackerConfig(**{**QUICK.__dict__, "calibration": "vector"})
    fit = fit_calibrated(X, y, folds, config, 0, scored=scored)
    # the calibrator is the one fitted on the scored rows' OOF, nested exactly as without extras
    expect_cal, expect = cross_calibrate(fit.raw.oof[scored], y[scored], folds[scored], "vector")
    np.testing.assert_array_equal(fit.oof_cal[scored], expect_cal)
    assert fit.calibrator.to_dict() == expect.to_dict()
    np.testing.assert_array_equal(fit.oof_cal[~scored], expect.predict_proba(fit.raw.oof[~scored]))
    # other labels on the non-scored rows change the boosters (they train on them) but calibrating
    # the same OOF ignores those labels completely
    relabelled = y.copy()
    relabelled[~scored] = 2
    again, again_cal = cross_calibrate(fit.raw.oof[scored], relabelled[scored], folds[scored], "vector")
    assert again_cal.to_dict() == expect.to_dict()
    refit = fit_calibrated(X, relabelled, folds, config, 0, scored=scored)
    assert not np.array_equal(refit.raw.oof, fit.raw.oof)
    recal, cal2 = cross_calibrate(refit.raw.oof[scored], y[scored], folds[scored], "vector")
    np.testing.assert_array_equal(refit.oof_cal[scored], recal)  # scored labels only: relabelled[scored] == y[scored]
    assert np.array_equal(relabelled[scored], y[scored]) and cal2.to_dict() == refit.calibrator.to_dict()


def test_tieless_rows_train_masked_and_get_oof(data):
    _, X, y, folds = data
    tieless = np.arange(len(y)) % 2 == 0
    y2 = np.where(tieless & (y == 2), 0, y)
    fit = fit_calibrated(X, y2, folds, QUICK, 0, tieless=tieless, scored=~tieless)
    assert fit.raw.tie_handling == "masked_tie"
    assert not np.isnan(fit.raw.oof).any()
    plain = fit_calibrated(
        X, y2, folds, StackerConfig(**{**QUICK.__dict__, "tie_handling": "plain"}), 0, tieless=tieless
    )
    assert fit.raw.oof[:, 2].mean() > plain.raw.oof[:, 2].mean()  # masked rows do not pull P(tie) down


def test_extra_train_and_fold_seed_flags():
    from pipelines.ablation import build_parser
    from pipelines.cli import sources_from_args

    args = build_parser().parse_args(
        [
            "--extra-train",
            "hh=x.csv:0.5",
            "--extra-train",
            "y.csv.gz",
            "--fold-seeds",
            "3",
            "--tie-handling",
            "weighted",
        ]
    )
    sources = sources_from_args(args)
    assert sources.extra_train == ("hh=x.csv:0.5", "y.csv.gz") and sources.fold_seeds == 3
    assert [(s.name, s.weight) for s in sources.sources] == [("hh", 0.5), ("y", 1.0)]
    assert args.tie_handling == "weighted"
    assert sources_from_args(build_parser().parse_args([])).fold_seeds == 1
    for bad in (["--extra-train", "x.csv:-1"], ["--tie-handling", "nope"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)


def test_ablation_with_two_fold_seeds_reports_mean_and_std_over_seeds(tmp_path):
    from pipelines import ablation

    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    make_battles(100, seed=5).to_csv(train, index=False)
    make_battles(20, seed=6, labelled=False, start_id=90000).to_csv(test, index=False)
    fast = ["--num-boost-round", "15", "--early-stopping-rounds", "5", "--num-threads", "1", "--no-progress"]
    out = tmp_path / "run"
    argv = ["--train", str(train), "--test", str(test), "--out", str(out), "--groups", "length,formatting", *fast]
    assert ablation.main([*argv, "--n-jobs", "1", "--fold-seeds", "2"]) == 0
    report = json.loads((out / "ablation" / "ablation.json").read_text())
    d = report["variants"]["drop:formatting"]["diff_vs_full"]
    assert d["seeds"] == 2 and d["n_folds"] == 10 and d["std_over"] == "seeds" and len(d["per_seed"]) == 2
    assert d["mean"] == pytest.approx(np.mean(d["per_seed"]))
    assert d["std"] == pytest.approx(np.std(d["per_seed"], ddof=1))
    per_fold = np.asarray(d["per_fold"])
    np.testing.assert_allclose(d["per_seed"], [per_fold[:5].mean(), per_fold[5:].mean()])
    assert d["folds_improved"] == int((per_fold < 0).sum())
    assert len(report["variants"]["full"]["seed_log_loss"]) == 2 and report["config"]["fold_seeds"] == 2
    md = (out / "ablation" / "ablation.md").read_text()
    assert "mean ± std over the seeds" in md and f"{d['mean']:+.4f} ± {d['std']:.4f}" in md
    assert f"{d['folds_improved']}/10" in md
