import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone

from arena_schema import swap_feature_frame, swap_proba
from features.extractor import FeatureExtractor
from pipelines.data.battles import load_battles
from pipelines.data.folds import make_folds, prompt_groups
from pipelines.data.tables import read_proba_file
from pipelines.reports.metrics import multiclass_log_loss, nested_prior
from stacking.calibration import ProbabilityCalibrator, cross_calibrate
from stacking.config import StackerConfig
from stacking.cross_fit import cross_fit, fit_calibrated
from stacking.lgbm import LGBMStacker
from stacking.model import StackerModel
from stacking.sources import source_features
from stacking.tie_handling import TieAwareStacker

# one LightGBM thread: the same results, and far quicker on a machine with busy cores
FAST = {"num_boost_round": 200, "early_stopping_rounds": 20, "config": StackerConfig(num_threads=1)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.conftest import make_battles

    path = tmp_path_factory.mktemp("d") / "train.csv"
    make_battles(300, seed=3).to_csv(path, index=False)
    battles, _ = load_battles(path)
    X = FeatureExtractor(["length", "formatting", "overlap"], n_jobs=1, progress=False).transform(battles)
    folds = make_folds(battles, 5, seed=0)["fold"].to_numpy()
    return battles, X, battles["label"].to_numpy(), folds, prompt_groups(battles)


def test_swap_averaging_is_exactly_symmetric(prepared):
    battles, X, y, folds, groups = prepared
    model = LGBMStacker(seed=0, **FAST).fit(X, y, groups)
    direct = model.predict_proba(X)
    swapped = model.predict_proba(swap_feature_frame(X))
    np.testing.assert_array_equal(direct, swap_proba(swapped))  # p(A wins | A,B) == p(B wins | B,A), exactly
    np.testing.assert_allclose(direct.sum(axis=1), 1.0)


def test_swap_augmentation_doubles_training_rows(prepared):
    _, X, y, _, groups = prepared
    model = LGBMStacker(seed=0, **FAST).fit(X, y, groups)
    Xa, ya, wa = model._augment(X.to_numpy(np.float32), y, np.arange(len(y), dtype=float))
    assert len(ya) == 2 * len(y) and Xa.shape == (2 * len(y), X.shape[1])
    counts = np.bincount(ya, minlength=3)
    assert counts[0] == counts[1]  # A and B wins balanced after augmentation
    np.testing.assert_array_equal(wa, np.tile(np.arange(len(y), dtype=float), 2))  # a swapped copy keeps its weight


def test_cross_fit_oof_covers_every_row_once_and_beats_prior(prepared):
    _, X, y, folds, groups = prepared
    result = cross_fit(X, y, folds, groups, seed=0, **FAST)
    assert not np.isnan(result.oof).any()
    assert result.oof.shape == (len(y), 3)
    assert len(result.models) == 5
    # each row's OOF prediction equals the prediction of the one model that did not train on its fold
    for k, model in zip(result.fold_ids, result.models):
        np.testing.assert_allclose(result.oof[folds == k], model.predict_proba(X[folds == k]))
    prior = multiclass_log_loss(y, nested_prior(y, folds))
    assert multiclass_log_loss(y, result.oof) < prior  # the synthetic signal is learnable


def test_inner_early_stopping_never_sees_the_predicted_fold(prepared, monkeypatch):
    """Each fold's booster is trained and early-stopped only on rows of the other folds."""
    _, X, y, folds, groups = prepared
    seen = []
    original = LGBMStacker.fit

    def spy(self, X_fit, y_fit, groups_fit=None, callbacks=None, **kwargs):
        seen.append(set(X_fit.index))
        return original(self, X_fit, y_fit, groups_fit, callbacks, **kwargs)

    monkeypatch.setattr(LGBMStacker, "fit", spy)
    cross_fit(X, y, folds, groups, seed=0, **FAST)
    assert len(seen) == len(np.unique(folds))  # one fit per fold, each seen by the spy
    for k, rows in zip(sorted(np.unique(folds)), seen, strict=True):
        assert rows.isdisjoint(set(X.index[folds == k]))


def test_temperature_calibration_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(0, 1, (3000, 3))
    logits[np.arange(3000), y] += 1.0
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    overconfident = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    cal = ProbabilityCalibrator("temperature").fit(overconfident, y)
    assert cal.temperature_ == pytest.approx(3.0, rel=0.15)
    assert multiclass_log_loss(y, cal.predict_proba(overconfident)) < multiclass_log_loss(y, overconfident)
    assert multiclass_log_loss(y, cal.predict_proba(overconfident)) == pytest.approx(
        multiclass_log_loss(y, honest), abs=0.01
    )


def test_vector_calibration_keeps_swap_symmetry():
    rng = np.random.default_rng(1)
    p = rng.dirichlet([2, 2, 1], 500)
    y = rng.integers(0, 3, 500)
    cal = ProbabilityCalibrator("vector").fit(p, y)
    np.testing.assert_allclose(cal.predict_proba(swap_proba(p)), swap_proba(cal.predict_proba(p)))


def test_smoothing_as_the_in_source_calibration_is_nested_and_round_trips():
    """``calibration="smoothing"`` is a StackerConfig choice too: nested across folds like the others, and
    its eps survives to_dict / from_dict."""
    rng = np.random.default_rng(3)
    p, y, folds = rng.dirichlet([1, 1, 1], 300), rng.integers(0, 3, 300), np.repeat(np.arange(5), 60)
    calibrated, final = cross_calibrate(p, y, folds, "smoothing")
    assert final.kind == "smoothing" and 0.5 < final.smoothing_ <= 0.9  # random labels: close to uniform
    assert np.allclose(calibrated.sum(1), 1) and multiclass_log_loss(y, calibrated) < multiclass_log_loss(y, p)
    again = ProbabilityCalibrator.from_dict(final.to_dict())
    np.testing.assert_allclose(again.predict_proba(p), final.predict_proba(p))
    assert StackerConfig(calibration="smoothing").calibration == "smoothing"


def test_cross_calibrate_is_nested(monkeypatch):
    """The calibrator that scores fold k never saw fold k's rows."""
    rng = np.random.default_rng(2)
    p, y, folds = rng.dirichlet([1, 1, 1], 100), rng.integers(0, 3, 100), np.repeat(np.arange(5), 20)
    fitted_on = []
    original = ProbabilityCalibrator.fit

    def spy(self, proba, labels):
        fitted_on.append(len(labels))
        return original(self, proba, labels)

    monkeypatch.setattr(ProbabilityCalibrator, "fit", spy)
    calibrated, final = cross_calibrate(p, y, folds, "temperature")
    assert fitted_on == [80] * 5 + [100]
    assert calibrated.shape == p.shape and np.allclose(calibrated.sum(1), 1)


def test_model_save_load_predicts_the_same(prepared, tmp_path):
    _, X, y, folds, groups = prepared
    result = cross_fit(X, y, folds, groups, seed=0, **FAST)
    _, calibrator = cross_calibrate(result.oof, y, folds, "vector")
    model = StackerModel.from_fold_models(result.models, calibrator, {"groups": ["length"]})
    before = model.predict_proba(X)
    model.save(tmp_path / "model")
    after = StackerModel.load(tmp_path / "model").predict_proba(X)
    np.testing.assert_allclose(before, after, rtol=1e-10)
    assert (tmp_path / "model" / "model.json").exists()
    with pytest.raises(ValueError, match="lacks column"):
        model.predict_proba(X.drop(columns=[X.columns[0]]))


def test_probability_source_columns_swap_like_features(tmp_path):
    ids = pd.Series(["1", "2", "3"])
    frame = pd.DataFrame(
        {
            "id": ["3", "1", "2"],
            "winner_model_a": [0.2, 0.5, 0.1],
            "winner_model_b": [0.7, 0.3, 0.1],
            "winner_tie": [0.1, 0.2, 0.8],
        }
    )
    path = tmp_path / "oof_x.parquet"
    frame.to_parquet(path)
    cols = source_features(read_proba_file(path), ids, "x")
    assert cols["a_enc_x"].tolist() == pytest.approx([0.5, 0.1, 0.2])  # aligned by id
    swapped = swap_feature_frame(cols)
    assert swapped["a_enc_x"].tolist() == cols["b_enc_x"].tolist()
    assert swapped["diff_enc_x"].tolist() == (-cols["diff_enc_x"]).tolist()
    with pytest.raises(ValueError, match="no probabilities for 1 id"):
        source_features(read_proba_file(path), pd.Series(["1", "4"]), "x")
    frame.loc[0, "winner_tie"] = 0.5
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: line 2, columns .*: probabilities sum to 1.4000, not 1 \(id=3\)"):
        read_proba_file(tmp_path / "bad.csv")


def test_zero_weight_rows_do_not_affect_the_model(prepared):
    _, X, y, folds, groups = prepared
    weights = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0)
    scrambled = np.where(weights == 0, (y + 1) % 3, y)  # other labels on the rows that weigh nothing
    fit = {"seed": 0, **FAST}
    a = LGBMStacker(**fit).fit(X, y, groups, sample_weight=weights)
    b = LGBMStacker(**fit).fit(X, scrambled, groups, sample_weight=weights)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    unweighted = LGBMStacker(**fit).fit(X, scrambled, groups)
    assert not np.allclose(a.predict_proba(X), unweighted.predict_proba(X))  # the weights are used at all
    # threaded through the cross-fit: OOF identical whatever the zero-weight rows' labels are
    ra = cross_fit(X, y, folds, groups, seed=0, sample_weight=weights, **FAST)
    rb = cross_fit(X, scrambled, folds, groups, seed=0, sample_weight=weights, **FAST)
    np.testing.assert_array_equal(ra.oof, rb.oof)


class _FoldMean(BaseEstimator):
    """A trivial fold feature: the mean response length of the battles it was fitted on."""

    def fit(self, battles: pd.DataFrame) -> "_FoldMean":
        self.seen_ids_ = set(battles["id"].astype(str))
        self.mean_ = float(battles["a_turns"].map(lambda t: len("".join(t))).mean())
        return self

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prompt_fold_mean": np.full(len(battles), self.mean_)}, index=battles.index)


def test_fold_features_are_fitted_on_training_folds_only(prepared):
    battles, X, y, folds, groups = prepared
    prototype = _FoldMean()
    result = cross_fit(X, y, folds, groups, seed=0, fold_features=[prototype], battles=battles, **FAST)
    assert not hasattr(prototype, "mean_")  # cloned per fold, never fitted itself
    ids = battles["id"].astype(str).to_numpy()
    assert len(result.fold_transformers) == 5
    means = set()
    for k, (fitted,), model in zip(result.fold_ids, result.fold_transformers, result.models):
        assert fitted.seen_ids_ == set(ids[folds != k])  # fit saw the training folds, and nothing else
        expected = battles["a_turns"][folds != k].map(lambda t: len("".join(t))).mean()
        assert fitted.mean_ == pytest.approx(expected)
        assert model.columns_[-1] == "prompt_fold_mean"
        means.add(fitted.mean_)
    assert len(means) == 5  # one value per fold: each learned from its own rows
    assert not np.isnan(result.oof).any()
    with pytest.raises(ValueError, match="battles"):
        cross_fit(X, y, folds, groups, seed=0, fold_features=[prototype], **FAST)


def test_stacker_config_is_validated_and_is_the_one_source_of_defaults():
    with pytest.raises(ValueError, match="calibration"):
        StackerConfig(calibration="platt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner_valid_fraction"):
        StackerConfig(inner_valid_fraction=1.5)
    model = LGBMStacker(num_boost_round=7, config=StackerConfig(num_threads=3, early_stopping_rounds=3))
    resolved = model.resolved_config
    assert (resolved.num_boost_round, resolved.early_stopping_rounds, model.lgb_params["num_threads"]) == (7, 3, 3)
    assert LGBMStacker().resolved_config == StackerConfig()
    assert ProbabilityCalibrator.KINDS == ("none", "temperature", "vector", "smoothing")


def test_stackers_clone_to_the_same_model(prepared):
    """sklearn.base.clone: same parameters, unfitted, and fitted on the same rows the same predictions."""
    _, X, y, _, groups = prepared
    lgbm = LGBMStacker(seed=3, num_boost_round=60, early_stopping_rounds=10, config=StackerConfig(num_threads=1))
    fitted = lgbm.fit(X, y, groups)
    twin = clone(fitted)
    assert twin.get_params() == lgbm.get_params() and twin.booster_ is None
    np.testing.assert_array_equal(twin.fit(X, y, groups).predict_proba(X), fitted.predict_proba(X))

    source = np.where(np.arange(len(y)) % 3 == 0, "no_ties", "ties")
    has_ties = source == "ties"
    for option in ("masked_tie", "hierarchical"):
        model = TieAwareStacker(option, seed=1, num_boost_round=60, early_stopping_rounds=10, params={"num_threads": 1})
        copy = clone(model)
        assert copy is not model and copy.get_params() == model.get_params()
        assert copy.resolved_config == model.resolved_config and copy.resolved_config.tie_handling == option
        first = model.fit(X, y, source, has_ties, groups=groups).predict_proba(X)
        np.testing.assert_array_equal(copy.fit(X, y, source, has_ties, groups=groups).predict_proba(X), first)
        assert clone(model).set_params(option="plain").resolved_config.tie_handling == "plain"


def test_fit_calibrated_is_cross_fit_then_nested_calibration(prepared):
    _, X, y, folds, groups = prepared
    config = StackerConfig(num_boost_round=60, early_stopping_rounds=10, calibration="vector", num_threads=1)
    fit = fit_calibrated(X, y, folds, config, seed=0, groups=groups)
    raw = cross_fit(X, y, folds, groups, config=config, seed=0)
    np.testing.assert_array_equal(fit.raw.oof, raw.oof)
    calibrated, calibrator = cross_calibrate(raw.oof, y, folds, "vector")
    np.testing.assert_allclose(fit.oof_cal, calibrated)
    np.testing.assert_allclose(fit.calibrator.predict_proba(raw.oof), calibrator.predict_proba(raw.oof))
