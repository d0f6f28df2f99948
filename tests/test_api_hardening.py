"""The Python API refuses or repeats, never silently differs (issue 26, cases 2, 3 and 13, and signing):
a loaded or in-memory model returns what its run submitted, a pickle is checked like a bundle, wrong input
types and unfitted models fail clearly, and a loader can require a signed bundle."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from arena_schema import CLASS_COLUMNS
from features.groups import GROUPS
from pipelines import full_run, predict
from pipelines.bundle import model_bundle
from pipelines.bundle.decisions import prior_submission
from pipelines.bundle.store import KEY_ENV, MANIFEST, REQUIRE_ENV, BundleError, manifest_digest
from pipelines.model.bundle_scoring import predict_file, score_bundle
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.model.scoring import score
from pipelines.runtime.errors import USER_ERROR_EXIT, UserError, run_command
from stacking.config import StackerConfig
from tests.conftest import make_battles

QUICK = StackerConfig(num_boost_round=20, early_stopping_rounds=5, num_threads=1)
FAST = ["--num-boost-round", "5", "--early-stopping-rounds", "2", "--num-threads", "1", "--no-progress"]
PRIOR = np.array([0.5, 0.3, 0.2])


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("api_data")
    train, test = make_battles(90, seed=5), make_battles(12, seed=6, labelled=False, start_id=7000)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    return {"train": train, "test": test, "root": root}


@pytest.fixture(scope="module")
def fitted(data) -> ArenaPreferenceModel:
    """Never saved nor changed by the tests (a save records a verdict on the model)."""
    model = ArenaPreferenceModel(n_folds=3, stacker=QUICK, feature_groups=("length", "formatting"), n_jobs=1)
    return model.fit(data["train"])


@pytest.fixture(scope="module")
def plain_bundle(fitted, tmp_path_factory) -> Path:
    """An unsigned bundle, saved from a copy so that ``fitted`` stays as fitted."""
    return pickle.loads(pickle.dumps(fitted)).save(tmp_path_factory.mktemp("plain") / "model")


@pytest.fixture(scope="module")
def prior_bundle(plain_bundle, tmp_path_factory) -> Path:
    """A bundle whose run submitted the class prior (the prior guard rejected its stacker)."""
    decisions = {"prior_guard": {"use_prior": True}, "submitted": prior_submission(PRIOR)}
    target = tmp_path_factory.mktemp("prior") / "model"
    return ArenaPreferenceModel.load(plain_bundle).save(target, decisions=decisions)


def _one_line(info: pytest.ExceptionInfo, needle: str) -> str:
    message = str(info.value)
    assert "\n" not in message and needle in message, message
    return message


# --------------------------------------------------------------------------- case 2: the prior guard's verdict


def test_a_loaded_bundle_returns_what_its_run_submitted(prior_bundle, fitted, data, tmp_path):
    test = data["test"]
    loaded = ArenaPreferenceModel.load(prior_bundle)
    np.testing.assert_allclose(loaded.predict_proba(test), np.tile(PRIOR, (len(test), 1)))
    proba, decision = score(loaded, test, stacker=None, test_calibration=None)
    np.testing.assert_allclose(proba, np.tile(PRIOR, (len(test), 1)))
    assert decision["stacker"] is None and decision["test_choice"]["calibration"] == "none (class prior)"
    assert not hasattr(loaded, "last_calibration_")  # the decision is returned, never stored on the model
    assert (loaded.predict(test) == "a").all()  # the prior's most probable class on every row
    stacker = fitted.predict_proba(test)
    assert not np.allclose(stacker, PRIOR)  # the premise: the stacker differs from the prior
    for named in ({"stacker": "chosen"}, {"stacker": "features"}, {"use_encoders": False}):
        np.testing.assert_allclose(loaded.predict_proba(test, **named), stacker, atol=1e-9)
    # the command's and the Kaggle path's scoring agree with predict_proba: one rule
    written = predict_file(prior_bundle, data["root"] / "test.csv", tmp_path / "p.csv", n_jobs=1, progress=False)
    np.testing.assert_allclose(written[list(CLASS_COLUMNS)].to_numpy(), loaded.predict_proba(test), atol=1e-7)
    score_bundle(loaded, test, tmp_path / "k.csv", stacker="chosen", log=lambda _: None)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "k.csv")[list(CLASS_COLUMNS)].to_numpy(), stacker, atol=1e-6)


def test_a_resaved_bundle_keeps_its_verdict(prior_bundle, data, tmp_path):
    again = ArenaPreferenceModel.load(prior_bundle).save(tmp_path / "again")
    manifest = json.loads((again / MANIFEST).read_text())
    assert manifest["decisions"]["submitted"]["kind"] == "class prior"
    np.testing.assert_allclose(ArenaPreferenceModel.load(again).predict_proba(data["test"])[0], PRIOR)


@pytest.mark.parametrize("budget", [None, 1.0], ids=["one publish", "a publish per step"])
def test_the_run_model_in_memory_repeats_the_verdict_and_only_for_the_model_judged(budget, data, monkeypatch):
    """The run's guard rejects the first model it judges. In memory and loaded, that model returns the prior;
    with a budget the model is judged again after it changed, accepted, and the verdict does not stick."""
    from pipelines.model import run

    real_decide, made, calls = run.decide, [], []

    def decide(stacker, prior, allow):
        calls.append(stacker)
        return real_decide(prior + 0.5 if len(calls) == 1 else stacker, prior, allow)

    def estimator_of(config):
        made.append(real_estimator_of(config))
        return made[-1]

    real_estimator_of = run.estimator_of
    monkeypatch.setattr(run, "decide", decide)
    monkeypatch.setattr(run, "estimator_of", estimator_of)
    out = data["root"] / f"run_{budget}"
    argv = ["--train", str(data["root"] / "train.csv"), "--test", str(data["root"] / "test.csv"), "--out", str(out)]
    argv += ["--n-jobs", "1", *FAST, *(["--time-budget-hours", str(budget)] if budget else [])]
    assert full_run.main(argv) == 0
    submission = pd.read_csv(out / "submission.csv")[list(CLASS_COLUMNS)].to_numpy()
    loaded = ArenaPreferenceModel.load(out / "model")
    if budget is None:  # the one model judged was rejected: the prior everywhere
        assert len(calls) == 1 and np.allclose(submission, submission[0])
        np.testing.assert_allclose(made[0].predict_proba(data["test"]), submission, atol=1e-7)
    else:  # judged at each publish: rejected first, then accepted once it changed
        assert len(calls) == 2 and not np.allclose(submission, submission[0])
        np.testing.assert_allclose(made[0].predict_proba(data["test"]), submission, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(data["test"]), submission, atol=1e-6)


# --------------------------------------------------------------------------- case 3: pickles are checked


def test_a_pickle_round_trip_predicts_the_same(fitted, data, tmp_path):
    expected = fitted.predict_proba(data["test"])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(data["test"]), expected)
    joblib.dump(fitted, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict_proba(data["test"]), expected)
    unfitted = pickle.loads(pickle.dumps(ArenaPreferenceModel(n_folds=3)))  # no identity needed, none checked
    assert unfitted.get_params()["n_folds"] == 3


def test_a_pickle_from_other_feature_code_is_refused(fitted, monkeypatch):
    blob = pickle.dumps(fitted)
    length = GROUPS["length"]

    def doubled(view, prompt):
        return {k: 2 * v for k, v in length.side(view, prompt).items()}

    monkeypatch.setitem(GROUPS, "length", dataclasses.replace(length, side=doubled))
    with pytest.raises(BundleError) as info:
        pickle.loads(blob)
    assert "save() the model and load() its bundle" in _one_line(info, "other values on the fixed check battles")
    monkeypatch.setitem(GROUPS, "length", length)
    pickle.loads(blob)  # the code as it was: accepted


def test_a_pickle_from_other_library_versions_is_refused(fitted, monkeypatch):
    blob = pickle.dumps(fitted)
    versions = model_bundle.library_versions()
    monkeypatch.setattr(model_bundle, "library_versions", lambda: {**versions, "lightgbm": "0.1"})
    with pytest.raises(BundleError) as info:
        pickle.loads(blob)
    _one_line(info, f"lightgbm {versions['lightgbm']} when pickled, 0.1 now")


def test_a_pickle_without_identity_is_refused(fitted):
    state = fitted.__getstate__()
    del state[model_bundle.PICKLED_IDENTITY]
    with pytest.raises(BundleError, match="carries no feature identity"):
        ArenaPreferenceModel.__new__(ArenaPreferenceModel).__setstate__(state)


# --------------------------------------------------------------------------- case 13: inputs and unfitted models


@pytest.mark.parametrize(
    "convert",
    [lambda f: f.to_numpy(), lambda f: f.to_dict("records"), lambda f: f["prompt"]],
    ids=["ndarray", "list of dicts", "series"],
)
def test_battles_that_are_not_a_frame_are_refused_clearly(convert, fitted, data):
    for call in (
        lambda: ArenaPreferenceModel(n_folds=3).fit(convert(data["train"])),
        lambda: ArenaPreferenceModel(n_folds=3).fit(convert(data["train"]), np.zeros(len(data["train"]), int)),
        lambda: fitted.predict_proba(convert(data["test"])),
        lambda: fitted.predict(convert(data["test"])),
    ):
        with pytest.raises(TypeError) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
        _one_line(info, "expected a pandas DataFrame of battles")


def test_an_unfitted_model_raises_not_fitted(data):
    model = ArenaPreferenceModel(n_folds=3)
    for call in (
        lambda: model.predict(data["test"]),
        lambda: model.predict_proba(data["test"]),
        lambda: model.score(data["train"]),
        lambda: score(model, data["test"], stacker=None, test_calibration=None),
    ):
        with pytest.raises(NotFittedError):
            call()


# --------------------------------------------------------------------------- signing


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_signing_key_is_refused(value, fitted, plain_bundle, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(BundleError) as info:
        fitted.save(tmp_path / "model")
    _one_line(info, f"{KEY_ENV} is set but empty")
    assert not list(tmp_path.iterdir())  # nothing written, not even a staged folder
    with pytest.raises(BundleError, match="set but empty"):
        ArenaPreferenceModel.load(plain_bundle)

    def no_work(*args, **kwargs):
        raise AssertionError("the fit started before the key was checked")

    monkeypatch.setattr(ArenaPreferenceModel, "training_inputs", no_work)
    with pytest.raises(BundleError, match="set but empty"):
        ArenaPreferenceModel(n_folds=3).fit(data["train"])
    argv = ["--train", str(data["root"] / "train.csv"), "--test", str(data["root"] / "test.csv")]
    code = run_command(full_run.main, [*argv, "--out", str(tmp_path / "run"), "--n-jobs", "1", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == USER_ERROR_EXIT and err.count("\n") == 0 and f"{KEY_ENV} is set but empty" in err, err
    assert not (tmp_path / "run" / "model").exists()


@pytest.fixture
def signed(plain_bundle, tmp_path, monkeypatch) -> Path:
    model = ArenaPreferenceModel.load(plain_bundle)
    monkeypatch.setenv(KEY_ENV, "s3cret")
    path = model.save(tmp_path / "signed")
    monkeypatch.delenv(KEY_ENV)
    return path


def _forge(bundle: Path) -> None:
    """A signed bundle edited and re-digested with plain sha256, as anyone without the key can."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["oof_log_loss"] = 0.01
    manifest["digest"] = manifest_digest(manifest)  # no key set: plain sha256
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_a_loader_can_require_a_signature(signed, plain_bundle, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "s3cret")
    ArenaPreferenceModel.load(signed, require_signature=True)  # signed under the key: accepted
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BundleError) as info:
        ArenaPreferenceModel.load(signed, require_signature=True)
    _one_line(info, f"a signed bundle is required, but {KEY_ENV} is not set")
    _forge(signed)
    assert ArenaPreferenceModel.load(signed).oof_log_loss_ == 0.01  # what signing alone cannot stop
    for bundle in (signed, plain_bundle):
        with pytest.raises(BundleError) as info:
            ArenaPreferenceModel.load(bundle, require_signature=True)
        _one_line(info, "not signed, and a signed bundle is required")
    monkeypatch.setenv(REQUIRE_ENV, "1")  # the same for every load, e.g. the Kaggle notebook's
    with pytest.raises(BundleError, match="not signed, and a signed bundle is required"):
        ArenaPreferenceModel.load(signed)
    monkeypatch.setenv(REQUIRE_ENV, "maybe")
    with pytest.raises(BundleError, match=f"{REQUIRE_ENV}='maybe'"):
        ArenaPreferenceModel.load(signed)
    monkeypatch.delenv(REQUIRE_ENV)
    argv = ["--model", str(signed), "--test", str(data["root"] / "test.csv"), "--out", str(tmp_path / "s.csv")]
    assert run_command(predict.main, [*argv, "--require-signature"]) == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not signed, and a signed bundle is required" in err, err
    assert not (tmp_path / "s.csv").exists()
