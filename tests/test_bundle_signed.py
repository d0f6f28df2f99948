"""The bundle carries the run's decisions and what its predictions depend on, and refuses in one line
whatever no longer matches: an edited manifest, an older format, changed feature code, another encoder
base. ``predict`` and the Kaggle scoring path submit what the run submitted unless told otherwise."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from features.groups import GROUPS
from pipelines import full_run, predict
from pipelines.bundle.identity import base_identity
from pipelines.bundle.store import BUNDLE_FORMAT, KEY_ENV, MANIFEST, BundleError, write_manifest
from pipelines.model import bundle_scoring
from pipelines.model.bundle_scoring import score_bundle
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.model.scoring import EncoderScoring
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from tests.conftest import make_battles

FAST = ["--num-boost-round", "5", "--early-stopping-rounds", "2", "--num-threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory) -> Path:
    """A run whose stacker is judged worse than the class prior (the guard's input made so, as in
    tests/test_prior_guard.py): the run submits the prior."""
    from pipelines.model import run

    root = tmp_path_factory.mktemp("prior_run")
    make_battles(60, seed=61).to_csv(root / "train.csv", index=False)
    make_battles(15, seed=62, labelled=False, start_id=9000).to_csv(root / "test.csv", index=False)
    argv = ["--train", str(root / "train.csv"), "--test", str(root / "test.csv"), "--out", str(root / "run")]
    real_decide = run.decide
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run, "decide", lambda stacker, prior, allow: real_decide(prior + 0.5, prior, allow))
        assert full_run.main([*argv, "--n-jobs", "1", *FAST]) == 0
    report = json.loads((root / "run" / "report.json").read_text())
    assert report["prior_guard"]["use_prior"], report["prior_guard"]  # the premise of the tests below
    return root


def _proba(path: Path) -> np.ndarray:
    return pd.read_csv(path)[list(CLASS_COLUMNS)].to_numpy()


def test_the_bundle_records_the_prior_guard_and_predict_repeats_it(prior_run, tmp_path):
    run = prior_run / "run"
    manifest = json.loads((run / "model" / MANIFEST).read_text())
    assert manifest["decisions"]["prior_guard"]["use_prior"] is True
    assert manifest["decisions"]["submitted"]["kind"] == "class prior"
    submitted = _proba(run / "submission.csv")
    assert np.allclose(submitted, submitted[0])  # one row repeated: the prior
    again = bundle_scoring.predict_file(run / "model", prior_run / "test.csv", tmp_path / "again.csv", n_jobs=1)
    np.testing.assert_allclose(again[list(CLASS_COLUMNS)].to_numpy(), submitted, atol=1e-7)
    told = bundle_scoring.predict_file(
        run / "model", prior_run / "test.csv", tmp_path / "s.csv", n_jobs=1, stacker="chosen"
    )
    assert not np.allclose(told[list(CLASS_COLUMNS)].to_numpy(), submitted, atol=1e-4)  # the rejected stacker


def test_kaggle_scoring_path_repeats_the_prior_unless_told(prior_run, tmp_path):
    run = prior_run / "run"
    model = ArenaPreferenceModel.load(run / "model")
    test = pd.read_csv(prior_run / "test.csv")
    record = score_bundle(model, test, tmp_path / "sub.csv", log=lambda _: None)
    assert record["encoder_decision"] == "class prior"
    np.testing.assert_allclose(_proba(tmp_path / "sub.csv"), _proba(run / "submission.csv"), atol=1e-7)
    score_bundle(model, test, tmp_path / "chosen.csv", stacker="chosen", log=lambda _: None)
    chosen = model.predict_proba(test, stacker="chosen")  # the rejected stacker: None would be the prior
    np.testing.assert_allclose(_proba(tmp_path / "chosen.csv"), chosen, atol=1e-6)


@pytest.fixture
def bundle(prior_run, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(prior_run / "run" / "model", copy)
    return copy


def _refused(bundle: Path, needle: str, **kwargs) -> None:
    with pytest.raises(BundleError) as info:
        ArenaPreferenceModel.load(bundle, **kwargs)
    assert "\n" not in str(info.value) and needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(chosen_stacker="full"),
        lambda m: m.update(classes=["b", "a", "tie"]),
        lambda m: m["decisions"]["submitted"].update(kind="stacker", stacker="features"),
        lambda m: m["decisions"]["prior_guard"].update(use_prior=False),
        lambda m: m["feature_identity"].update(outputs_sha256="0" * 64),
    ],
    ids=["chosen stacker", "class labels", "what was submitted", "prior guard verdict", "feature fingerprint"],
)
def test_an_edited_manifest_is_refused(edit, bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    edit(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _refused(bundle, "does not match its digest")


def test_an_older_bundle_format_is_refused_in_one_line(bundle, prior_run, tmp_path, capsys):
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["format_version"] = 1
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    _refused(bundle, f"bundle format 1, this version reads {BUNDLE_FORMAT}")
    argv = ["--model", str(bundle), "--test", str(prior_run / "test.csv"), "--out", str(tmp_path / "s.csv")]
    assert run_command(predict.main, argv) == USER_ERROR_EXIT
    assert "train again" in capsys.readouterr().err


def test_a_keyed_bundle_needs_its_key(prior_run, tmp_path, monkeypatch):
    model = ArenaPreferenceModel.load(prior_run / "run" / "model")
    monkeypatch.setenv(KEY_ENV, "s3cret")
    signed = model.save(tmp_path / "signed")
    assert json.loads((signed / MANIFEST).read_text())["digest"]["kind"] == "hmac-sha256"
    ArenaPreferenceModel.load(signed)  # the right key
    monkeypatch.setenv(KEY_ENV, "other")
    _refused(signed, "signed with another key")
    _refused(prior_run / "run" / "model", "not signed")  # a key set refuses an unsigned bundle
    monkeypatch.delenv(KEY_ENV)
    _refused(signed, f"set {KEY_ENV}")


def test_changed_feature_code_is_refused(bundle, monkeypatch):
    import features.extractor

    length = GROUPS["length"]

    def doubled(view, prompt):
        return {k: 2 * v for k, v in length.side(view, prompt).items()}

    monkeypatch.setitem(GROUPS, "length", dataclasses.replace(length, side=doubled))
    _refused(bundle, "other values on the fixed check battles")
    monkeypatch.setitem(GROUPS, "length", length)
    monkeypatch.setattr(features.extractor, "FEATURE_VERSION", "99")
    _refused(bundle, "feature version '1' in the bundle, '99' in this code")


def _with_fake_lora_encoder(bundle: Path, base: Path) -> None:
    """A LoRA encoder entry as ``ArenaPreferenceModel.save`` writes one (without real adapter weights:
    the base check runs when the bundle loads, before any weight is read)."""
    enc = bundle / "encoders" / "fake"
    (enc / "fold_0").mkdir(parents=True)
    (enc / "fold_0" / "adapter_model.safetensors").write_bytes(b"adapter")
    inputs = {"max_length": 64, "prompt_share": 0.25, "swap_average": True}
    (enc / "encoder.json").write_text(
        json.dumps({"name": "fake", "base_model": str(base), "lora": True, "folds": [0], "inputs": inputs,
                    "config": {"model_path": str(base)}})
    )  # fmt: skip
    manifest = json.loads((bundle / MANIFEST).read_text())
    content = {k: v for k, v in manifest.items() if k not in ("kind", "format_version", "versions", "files", "digest")}
    content["encoders"] = {
        "fake": {"directory": "encoders/fake", "base_model": str(base), "lora": True, "folds": [0],
                 "inputs": inputs, "base_identity": base_identity(base)}
    }  # fmt: skip
    write_manifest(bundle, content)


def _base(root: Path, weights: bytes, config: dict) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_a_lora_encoder_over_another_base_is_refused(bundle, tmp_path):
    weights = np.random.default_rng(0).bytes(1 << 20)
    config = {"_name_or_path": "org/base", "model_type": "llama", "hidden_size": 64}
    base = _base(tmp_path / "base", weights, config)
    _with_fake_lora_encoder(bundle, base)
    assert ArenaPreferenceModel.load(bundle).encoder_models_["fake"].config.model_path == str(base)
    moved = _base(tmp_path / "mounted" / "elsewhere", weights, {**config, "_name_or_path": "/kaggle/input/x"})
    ArenaPreferenceModel.load(bundle, encoder_base_paths={"fake": str(moved)})  # the same base, mounted elsewhere
    tuned = bytearray(weights)
    tuned[len(tuned) // 2] ^= 0xFF  # another fine-tune of the same shape: one byte differs in the middle
    other = _base(tmp_path / "other", bytes(tuned), config)
    _refused(bundle, "weights differ from the base it was trained on", encoder_base_paths={"fake": str(other)})
    wider = _base(tmp_path / "wider", weights, {**config, "hidden_size": 128})
    _refused(bundle, "config.json differ", encoder_base_paths={"fake": str(wider)})
    shutil.rmtree(base)  # no base at all: loading works (features-only scoring), using the encoder says why not
    loaded = ArenaPreferenceModel.load(bundle)
    with pytest.raises(BundleError, match="base model not found .* --encoder-base fake=DIR"):
        EncoderScoring().of("fake", loaded.encoder_models_["fake"], pd.DataFrame({"id": ["1"]}), deadline=None)
