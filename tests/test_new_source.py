"""New-source calibration: the LOSO fits never see the held-out source, the calibrator and the shift
detector do what they claim, and the estimator keeps, saves, chooses and refuses them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.bundle.store import BundleError
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.model.scoring import score
from stacking import cross_fit as cross_fit_module
from stacking import source_holdout
from stacking.calibration import ProbabilityCalibrator
from stacking.config import StackerConfig
from stacking.label_shift import MIN_ROWS, bbse_weights, em_weights, joint_confusion, label_shift_weights
from stacking.new_source import NewSourceCalibrator, NewSourceProcedure, source_weights
from stacking.shift_detection import ShiftDetector, ShiftReference, auc_interval
from stacking.source_balance import source_balance_weights
from tests.conftest import make_battles
from tests.test_estimator import _refused, _rehash

QUICK = StackerConfig(num_boost_round=30, early_stopping_rounds=10, num_threads=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _labelled(n: int, seed: int, prior=(0.4, 0.4, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """Well-calibrated synthetic posteriors: y drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3)) + np.log(prior)
    proba = _softmax(logits)
    y = np.array([rng.choice(3, p=p) for p in proba])
    return proba, y


# --------------------------------------------------------------------------- calibrators


def test_weighted_calibration_equals_duplicated_rows():
    proba, y = _labelled(300, 0)
    w = np.where(np.arange(300) < 100, 2.0, 1.0)
    weighted = ProbabilityCalibrator("vector").fit(proba, y, sample_weight=w)
    dup = np.r_[np.arange(300), np.arange(100)]
    duplicated = ProbabilityCalibrator("vector").fit(proba[dup], y[dup])
    assert weighted.temperature_ == pytest.approx(duplicated.temperature_, rel=1e-4)
    assert weighted.tie_bias_ == pytest.approx(duplicated.tie_bias_, abs=1e-4)
    with pytest.raises(ValueError, match="sample_weight"):
        ProbabilityCalibrator().fit(proba, y, sample_weight=-w)


def test_per_source_weighting_gives_each_source_the_same_weight():
    source = np.array(["big"] * 90 + ["small"] * 10)
    w = source_weights(source, "per_source")
    assert w[source == "big"].sum() == pytest.approx(w[source == "small"].sum())
    assert (source_weights(source, "pooled") == 1).all()


def test_new_source_temperature_learns_overconfidence():
    """LOSO predictions twice as sharp as the truth: the fitted temperature is ~2 and calibrated loss drops."""
    proba, y = _labelled(4000, 1)
    sharp = _softmax(2.0 * np.log(proba))
    source = np.repeat(["s1", "s2"], 2000)
    cal = NewSourceCalibrator(NewSourceProcedure("temperature")).fit(sharp, y, source)
    assert cal.calibrator is not None and cal.calibrator.temperature_ == pytest.approx(2.0, rel=0.1)
    before = -np.log(sharp[np.arange(4000), y]).mean()
    after = -np.log(cal.predict_proba(sharp)[np.arange(4000), y]).mean()
    assert after < before - 0.05


def test_new_source_smoothing_learns_the_share_of_coin_toss_votes():
    """A third of the votes drawn at random, the rest from the model's posteriors: the fitted eps is ~1/3,
    the calibrated loss drops, and A/B symmetry and the sums hold."""
    proba, _ = _labelled(6000, 5)
    rng = np.random.default_rng(6)
    truth = (1 - 1 / 3) * proba + (1 / 3) / 3
    y = np.array([rng.choice(3, p=p) for p in truth])
    cal = NewSourceCalibrator(NewSourceProcedure("smoothing")).fit(proba, y, np.repeat(["s1", "s2"], 3000))
    assert cal.calibrator is not None and cal.calibrator.smoothing_ == pytest.approx(1 / 3, abs=0.05)
    assert cal.calibrator.temperature_ == 1.0 and cal.calibrator.tie_bias_ == 0.0
    out = cal.predict_proba(proba)
    assert np.allclose(out.sum(axis=1), 1.0) and out.min() >= cal.calibrator.smoothing_ / 3 - 1e-12
    swapped = cal.predict_proba(proba[:, [1, 0, 2]])
    assert np.allclose(swapped, out[:, [1, 0, 2]])
    rows = np.arange(len(y))
    assert -np.log(out[rows, y]).mean() < -np.log(proba[rows, y]).mean() - 0.02


def test_median_weighting_takes_the_middle_source_not_the_noisiest():
    """Three sources: coin-toss shares 0.1, 0.2 and 0.85 (a crowd set whose votes the model cannot
    foresee). ``median`` fits each source alone and takes the middle eps (~0.2); ``per_source`` fits one
    eps on all three and is pulled far above it. The median also round-trips through to_dict."""
    proba, _ = _labelled(9000, 11)
    rng = np.random.default_rng(12)
    shares = np.repeat([0.1, 0.2, 0.85], 3000)
    truth = (1 - shares[:, None]) * proba + shares[:, None] / 3
    y = np.array([rng.choice(3, p=p) for p in truth])
    source = np.repeat(["s1", "s2", "crowd"], 3000)
    median = NewSourceCalibrator(NewSourceProcedure("smoothing", "median")).fit(proba, y, source)
    joint = NewSourceCalibrator(NewSourceProcedure("smoothing", "per_source")).fit(proba, y, source)
    assert median.calibrator is not None and joint.calibrator is not None
    alone = ProbabilityCalibrator("smoothing").fit(proba[source == "s2"], y[source == "s2"]).smoothing_
    assert median.calibrator.smoothing_ == pytest.approx(alone) and alone == pytest.approx(0.2, abs=0.06)
    assert joint.calibrator.smoothing_ > median.calibrator.smoothing_ + 0.1
    assert median.sources == ["crowd", "s1", "s2"]
    again = NewSourceCalibrator.from_dict(median.to_dict())
    assert np.array_equal(again.predict_proba(proba), median.predict_proba(proba))


def test_median_weighting_takes_the_temperature_median_on_the_log_scale():
    """Two sources, temperatures ~2 and ~0.5: the median of the logs is ~1 (the arithmetic mean would be 1.25)."""
    proba, y = _labelled(4000, 13)
    sharp, flat = _softmax(2.0 * np.log(proba[:2000])), _softmax(0.5 * np.log(proba[2000:]))
    source = np.repeat(["sharp", "flat"], 2000)
    cal = NewSourceCalibrator(NewSourceProcedure("temperature", "median")).fit(np.vstack([sharp, flat]), y, source)
    fits = [ProbabilityCalibrator("temperature").fit(p, t) for p, t in ((sharp, y[:2000]), (flat, y[2000:]))]
    assert cal.calibrator is not None
    assert cal.calibrator.temperature_ == pytest.approx(np.sqrt(fits[0].temperature_ * fits[1].temperature_))
    assert cal.calibrator.temperature_ == pytest.approx(1.0, abs=0.15)


def test_calibrator_written_before_smoothing_existed_still_loads():
    proba, y = _labelled(300, 7)
    stored = ProbabilityCalibrator("temperature").fit(proba, y).to_dict()
    del stored["smoothing"]
    again = ProbabilityCalibrator.from_dict(stored)
    assert again.smoothing_ == 0.0 and again.temperature_ == pytest.approx(stored["temperature"])


def test_em_and_bbse_recover_a_known_prior_shift():
    proba, y = _labelled(20000, 2)
    train_prior = np.bincount(y, minlength=3) / len(y)
    # the batch: tie rows kept, decided rows thinned, so the tie share doubles; p(x | y) unchanged
    rng = np.random.default_rng(3)
    keep = (y == 2) | (rng.random(len(y)) < 0.4)
    new_prior = np.bincount(y[keep], minlength=3) / keep.sum()
    truth = new_prior / train_prior
    stale = proba[keep]  # what a model calibrated on the old prior predicts for the batch
    assert em_weights(stale, train_prior) == pytest.approx(truth, rel=0.15)
    assert bbse_weights(stale, joint_confusion(proba, y)) == pytest.approx(truth, rel=0.15)
    assert np.allclose(label_shift_weights("em", stale[: MIN_ROWS - 1], train_prior), 1.0)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["calibrator"].__setitem__("temperature", 1e6), "temperature"),
        (lambda d: d["calibrator"].__setitem__("temperature", 1.5), "must be 1"),
        (lambda d: d["calibrator"].__setitem__("smoothing", 0.95), "smoothing"),
        (lambda d: d["calibrator"].__setitem__("smoothing", float("nan")), "smoothing"),
        (lambda d: d["calibrator"].__setitem__("kind", "temperature"), "smoothing"),
        (lambda d: d.__setitem__("train_prior", [0.5, 0.5, 0.5]), "train prior"),
        (lambda d: d["confusion"][0].__setitem__(0, -0.1), "confusion"),
        (lambda d: d["procedure"].__setitem__("label_shift", "magic"), "label shift"),
        (lambda d: d.__setitem__("sources", ["only-one"]), "2 held-out sources"),
    ],
)
def test_new_source_calibrator_round_trip_and_tamper(edit, message):
    proba, y = _labelled(600, 4)
    cal = NewSourceCalibrator().fit(proba, y, np.repeat(["a", "b", "c"], 200))
    again = NewSourceCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.allclose(again.predict_proba(proba), cal.predict_proba(proba))
    stored = json.loads(json.dumps(cal.to_dict()))
    edit(stored)
    with pytest.raises(ValueError, match=message):
        NewSourceCalibrator.from_dict(stored)


# --------------------------------------------------------------------------- leave-one-source-out fits


def test_held_out_source_never_trains_nor_do_rows_sharing_its_groups(monkeypatch):
    """Spy on every fit: no row of the held-out (or excluded) source, nor of a group it touches, trains."""
    n = 120
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a_x": rng.normal(size=n), "b_x": rng.normal(size=n), "diff_x": rng.normal(size=n)})
    y = rng.integers(0, 3, n)
    source = np.repeat(["s1", "s2", "s3"], 40)
    groups = np.arange(n) // 2
    groups[40] = groups[0]  # a row of s2 shares a group with a row of s1
    seen: list[np.ndarray] = []
    real = cross_fit_module.fit_rows

    def spy(X, y, train_idx, *args, **kwargs):
        seen.append(np.asarray(train_idx))
        return real(X, y, train_idx, *args, **kwargs)

    monkeypatch.setattr(source_holdout, "fit_rows", spy)
    has_ties = np.ones(n, dtype=bool)
    out = source_holdout.held_out_source_proba(X, y, source, has_ties, groups, ["s1"], QUICK, exclude=["s3"])
    assert len(seen) == 1 and out["s1"].shape == (40, 3)
    trained = seen[0]
    assert not np.isin(trained, np.flatnonzero(source == "s1")).any()
    assert not np.isin(trained, np.flatnonzero(source == "s3")).any()
    assert 40 not in trained  # shares a group with s1
    assert np.allclose(out["s1"].sum(axis=1), 1.0)


# --------------------------------------------------------------------------- shift detection


def test_shift_detector_tells_a_new_source_and_not_a_same_source_split():
    rng = np.random.default_rng(6)
    train = pd.DataFrame(rng.normal(size=(800, 4)), columns=list("abcd"))
    same = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    shifted = same.assign(a=same["a"] + 1.5)
    source = np.repeat(["s1", "s2"], 400)
    assert not ShiftDetector().fit(train, source, same).report_.new_source
    report = ShiftDetector().fit(train, source, shifted).report_
    assert report.new_source and report.auc > 0.8
    low, high = auc_interval(0.5, 100, 100)
    assert low < 0.5 < high


def test_shift_detector_groups_keep_one_prompt_on_one_side():
    """Two halves of one source differ only in which prompts they hold; a per-prompt feature must not
    let the detector tell them apart once scored rows are grouped by prompt."""
    rng = np.random.default_rng(7)
    prompt = rng.integers(0, 60, 1200)
    per_prompt = rng.normal(size=60)
    X = pd.DataFrame({"prompt_len": per_prompt[prompt], "noise": rng.normal(size=1200)})
    ref, sco = prompt < 30, prompt >= 30
    detector = ShiftDetector()
    grouped = detector.fit(X[ref], np.full(ref.sum(), "s"), X[sco], prompt[ref], prompt[sco]).report_
    assert not grouped.new_source, grouped.to_dict()


def test_shift_reference_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    X = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    ref = ShiftReference.sample(X, np.repeat(["s1", "s2"], 250), np.arange(500), per_source=100)
    assert len(ref.features) == 200
    again = ShiftReference.load(ref.save(tmp_path / "ref.npz"))
    assert again.features.equals(ref.features) and (again.source == ref.source).all()


# --------------------------------------------------------------------------- the estimator


def _own_prompts(frame: pd.DataFrame, tag: str) -> pd.DataFrame:
    """make_battles reuses prompt texts; a tag keeps each source's prompts its own (else no LOSO rows)."""
    return frame.assign(prompt=frame["prompt"].map(lambda p: json.dumps([f"{tag} " + json.loads(p)[0]])))


def _multi_source(n_per: int = 220) -> pd.DataFrame:
    parts = [
        _own_prompts(make_battles(n_per, seed=40 + i, start_id=10000 * (i + 1)), f"s{i}").assign(source=f"s{i}")
        for i in range(3)
    ]
    return pd.concat(parts, ignore_index=True)


def _test_frame(n: int, seed: int, start_id: int) -> pd.DataFrame:
    return _own_prompts(make_battles(n, seed=seed, labelled=False, start_id=start_id), "s9")


@pytest.fixture(scope="module")
def fitted_multi(tmp_path_factory):
    train = _multi_source()
    test = _test_frame(250, 60, 900000)
    model = ArenaPreferenceModel(n_folds=3, stacker=QUICK, n_jobs=1).fit(train)
    _, decision = score(model, test, stacker=None, test_calibration=None)  # as a run scores its test set
    bundle = model.save(tmp_path_factory.mktemp("ns") / "bundle", test_choice=decision["test_choice"])
    return model, train, test, bundle


def test_estimator_fits_both_calibrators_and_reports_the_choice(fitted_multi):
    model, train, test, _ = fitted_multi
    stacker = model.stackers_["features"]
    assert stacker.new_source is not None and stacker.new_source.sources == ["s0", "s1", "s2"]
    report = model.fit_report_.calibration
    assert report["new_source"]["features"]["fitted"] is True
    held = report["new_source"]["features"]["held_out_sources"]
    assert set(held) == {"s0", "s1", "s2"}
    # the default procedure takes the middle of what each held-out source asks for alone, as the report shows
    assert stacker.new_source.calibrator is not None
    alone = [h["fitted_alone"]["smoothing"] for h in held.values()]
    assert stacker.new_source.calibrator.smoothing_ == pytest.approx(float(np.median(alone)))
    auto, decision = score(model, test, stacker=None, test_calibration=None)
    choice = decision["test_choice"]
    assert choice["requested"] == "auto" and choice["calibration"] in ("in-source", "new-source")
    assert choice["shift"]["auc"] < 0.75  # the test battles are drawn like the training ones
    assert choice["calibration"] == "in-source"
    assert "new-source calibration" in model.fit_report_.timings
    new = model.predict_proba(test, test_calibration="new-source")
    old = model.predict_proba(test, test_calibration="in-source")
    assert not np.allclose(new, old)
    assert np.array_equal(auto, old) and np.array_equal(model.predict_proba(test), old)  # auto: in-source


def _spy_on_calibrator_fit(monkeypatch) -> list:
    """(rows, held-out names) of every NewSourceCalibrator.fit call, appended as they happen."""
    calls = []
    real = NewSourceCalibrator.fit

    def spy(self, proba, y, source):
        calls.append((len(y), sorted(set(source))))
        return real(self, proba, y, source)

    monkeypatch.setattr(NewSourceCalibrator, "fit", spy)
    return calls


def test_new_source_calibrator_is_fitted_on_training_rows_only(monkeypatch):
    """Spy: the calibrator's fit sees exactly the labels of the training sources' rows, never a test row."""
    train = _multi_source(210)
    test = _test_frame(50, 61, 800000)
    calls = _spy_on_calibrator_fit(monkeypatch)
    ArenaPreferenceModel(n_folds=3, stacker=QUICK, n_jobs=1).fit(train).predict_proba(test)
    assert calls == [(len(train), ["s0", "s1", "s2"])]


def test_bundle_round_trips_both_calibrators_and_the_decision(fitted_multi):
    model, _, test, bundle = fitted_multi
    loaded = ArenaPreferenceModel.load(bundle)
    for calibration in ("in-source", "new-source", "auto"):
        assert np.allclose(
            loaded.predict_proba(test, test_calibration=calibration),
            model.predict_proba(test, test_calibration=calibration),
            atol=1e-6,
        )
    decided = score(model, test, stacker=None, test_calibration=None)[1]["test_choice"]
    assert loaded.test_choice_ == decided  # the run's decision, recorded
    assert score(loaded, test, stacker=None, test_calibration=None)[1]["test_choice"] == decided
    kept = loaded.fit_report_.calibration["new_source"]["features"]  # the figures that chose it travel along
    assert set(kept["held_out_sources"]) == {"s0", "s1", "s2"} and kept["procedure"] == "smoothing/median/none"
    few, decision = score(loaded, test.head(20), stacker=None, test_calibration="auto")
    assert few.shape == (20, 3) and "too few" in decision["test_choice"]["why"]


def test_tampered_new_source_calibrator_refused(fitted_multi, tmp_path):
    _, _, _, bundle = fitted_multi
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    path = copy / "stacker_features" / "model.json"
    stored = json.loads(path.read_text())
    stored["new_source_calibrator"]["calibrator"]["temperature"] = 0.0
    path.write_text(json.dumps(stored))
    _rehash(copy, "stacker_features/model.json")
    assert "temperature" in _refused(copy, "model.json")
    stored["new_source_calibrator"]["calibrator"]["temperature"] = 1.0
    stored["new_source_calibrator"]["calibrator"]["smoothing"] = 2.0
    path.write_text(json.dumps(stored))
    _rehash(copy, "stacker_features/model.json")
    assert "smoothing" in _refused(copy, "model.json")


def test_single_source_uses_in_source_and_says_why(tmp_path):
    train, test = make_battles(150, seed=62), make_battles(40, seed=63, labelled=False, start_id=70000)
    model = ArenaPreferenceModel(n_folds=3, stacker=QUICK, n_jobs=1).fit(train)
    assert model.stackers_["features"].new_source is None
    choice = score(model, test, stacker=None, test_calibration=None)[1]["test_choice"]
    assert choice["calibration"] == "in-source" and "single" in choice["why"]
    with pytest.raises(ValueError, match="no new-source calibrator"):
        model.predict_proba(test, test_calibration="new-source")
    with pytest.raises(ValueError, match="test_calibration must be one of"):
        ArenaPreferenceModel(test_calibration="sometimes").fit(train)
    assert isinstance(BundleError("x"), ValueError)


def test_predict_command_takes_the_calibration(fitted_multi, tmp_path):
    from pipelines import predict

    model, _, test, bundle = fitted_multi
    test_csv = tmp_path / "test.csv"
    test.to_csv(test_csv, index=False)
    out = tmp_path / "sub.csv"
    args = ["--model", str(bundle), "--test", str(test_csv), "--out", str(out), "--n-jobs", "1"]
    assert predict.main([*args, "--test-calibration", "new-source"]) == 0
    written = pd.read_csv(out)[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.allclose(written, model.predict_proba(test, test_calibration="new-source"), atol=1e-6)
    decided = score(ArenaPreferenceModel.load(bundle), test, stacker=None, test_calibration=None)[1]
    assert decided["test_choice"] == score(model, test, stacker=None, test_calibration=None)[1]["test_choice"]
    with pytest.raises(SystemExit) as info:
        predict.main([*args, "--test-calibration", "sometimes"])
    assert info.value.code == 2


def test_source_balance_weights_give_each_source_rows_to_the_power():
    """Total weight per source ∝ rows^(1 - power); power 0 is pooled, 1 equal; mean weight 1."""
    source = np.array(["big"] * 90 + ["small"] * 10)
    for power, ratio in ((0.0, 9.0), (0.5, 3.0), (1.0, 1.0)):
        w = source_balance_weights(source, power)
        assert w.mean() == pytest.approx(1.0)
        assert w[source == "big"].sum() / w[source == "small"].sum() == pytest.approx(ratio)
    with pytest.raises(ValueError, match="power"):
        source_balance_weights(source, 1.5)


def test_new_source_calibrator_holds_out_families(monkeypatch):
    """A source's twin (SOURCE_FAMILIES: mtbench-human and its turn 2) is held out with it: the calibrator sees
    one held-out unit for the two, and the shift reference samples the family, not each source."""
    names = {"s0": "mtbench-human", "s1": "mtbench-human-turn2", "s2": "s2"}
    train = _multi_source(210)
    train["source"] = train["source"].map(names)
    calls = _spy_on_calibrator_fit(monkeypatch)
    model = ArenaPreferenceModel(n_folds=3, stacker=QUICK, n_jobs=1).fit(train)
    assert calls == [(len(train), ["mtbench-human", "s2"])]
    held = model.fit_report_.calibration["new_source"]["features"]["held_out_sources"]
    assert held["mtbench-human"]["rows"] == 420 and set(held) == {"mtbench-human", "s2"}
    assert sorted(set(model.shift_reference_.source)) == ["mtbench-human", "s2"]
