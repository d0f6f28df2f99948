"""Fold models kept after cross-fit: reloaded, they score new battles as the cross-fit did."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from encoders import cross_fit
from encoders.fold_models import MANIFEST, TOKENIZER_DIR, EncoderFoldModels
from encoders.parallel_predict import predict_proba_multi_gpu
from encoders.settings import EncoderConfig
from pipelines.data.battles import load_battles
from tests.conftest import make_battles
from tests.tiny_models import tiny_encoder_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("fold_models") / "train.csv"
    make_battles(40, seed=5).to_csv(path, index=False)
    battles = load_battles(path)[0]
    test = make_battles(9, seed=6, labelled=False, start_id=7000)
    test_path = path.with_name("test.csv")
    test.to_csv(test_path, index=False)
    return battles, load_battles(test_path, labelled=False)[0], np.arange(len(battles)) % 2


def _config(model: Path, **kw) -> EncoderConfig:
    return tiny_encoder_config(model, **{"eval_batch_size": 4, **kw})


def _cross_fit(config: EncoderConfig, data, out: Path, **kw) -> cross_fit.EncoderRun:
    battles, test, folds = data
    return cross_fit.cross_fit_encoder(
        config, battles, battles["label"].to_numpy(), folds, test, out, progress=False, **kw
    )


def _test_proba(run: cross_fit.EncoderRun) -> np.ndarray:
    return pd.read_parquet(run.test_path)[list(CLASS_COLUMNS)].to_numpy()


@pytest.fixture(scope="module")
def bert_run(tiny_distilbert, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert_run")
    return out, _cross_fit(_config(tiny_distilbert), data, out)


@pytest.fixture(scope="module")
def llama_run(tiny_llama, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("llama_run")
    return out, _cross_fit(_config(tiny_llama), data, out)


@pytest.mark.parametrize("run_fixture", ["bert_run", "llama_run"])
def test_reloaded_fold_models_reproduce_the_cross_fit_test_probabilities(run_fixture, request, data):
    out, run = request.getfixturevalue(run_fixture)
    assert run.complete and run.test_folds == [0, 1]
    models = EncoderFoldModels.load(out / f"encoder_{run.name}")
    assert models.folds == [0, 1]
    np.testing.assert_allclose(models.predict_proba(data[1]), _test_proba(run), atol=1e-5)


def test_lora_fold_keeps_adapter_and_head_only(llama_run, tiny_llama):
    from safetensors import safe_open

    out, run = llama_run
    work = out / f"encoder_{run.name}"
    manifest = json.loads((work / MANIFEST).read_text())
    assert manifest["lora"] is True and manifest["base_model"] == str(tiny_llama.resolve())
    fold = work / "fold_0"
    names = sorted(p.name for p in fold.iterdir())
    assert "adapter_model.safetensors" in names and "model.safetensors" not in names
    assert not any("tokenizer" in n for n in names)  # one tokenizer per encoder, not per fold
    assert (work / TOKENIZER_DIR / "tokenizer.json").exists() and not (work / "fold_1" / "tokenizer.json").exists()
    with safe_open(str(fold / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k or ".score." in k for k in keys), keys  # no base weight in the adapter
    assert any(".score." in k for k in keys)  # the trained head is saved with the adapter
    base_bytes = (tiny_llama / "model.safetensors").stat().st_size
    assert (fold / "adapter_model.safetensors").stat().st_size < base_bytes


def test_base_path_override_and_copy_to(llama_run, tiny_llama, data, tmp_path):
    """A bundle holds the listed files only; the base weights are found where load() is told."""
    out, run = llama_run
    models = EncoderFoldModels.load(out / f"encoder_{run.name}")
    files = models.files()
    assert Path(MANIFEST) in files and not any("parquet" in str(f) or "done" in str(f) for f in files)
    moved_base = tmp_path / "elsewhere" / "base"
    shutil.copytree(tiny_llama, moved_base)
    copy = models.copy_to(tmp_path / "bundle")
    assert sorted(copy.files()) == sorted(files)
    reloaded = EncoderFoldModels.load(tmp_path / "bundle", base_path=moved_base)
    assert reloaded.config.model_path == str(moved_base)
    np.testing.assert_allclose(reloaded.predict_proba(data[1]), _test_proba(run), atol=1e-5)


def test_save_models_none_and_lora_keep_no_fully_fine_tuned_folds(tiny_distilbert, bert_run, data, tmp_path):
    run = _cross_fit(_config(tiny_distilbert, save_models="none"), data, tmp_path)
    work = tmp_path / f"encoder_{run.name}"
    assert run.complete and (work / "fold_0.done.json").exists()  # checkpoints kept, models not
    assert not [p for p in work.iterdir() if p.is_dir()] and not (work / MANIFEST).exists()
    # a rerun asking for "lora" resumes from the checkpoints (no retraining) and prunes the full models
    out = tmp_path / "copy"
    shutil.copytree(bert_run[0], out)  # the module's run stays as it is for the other tests
    work = out / f"encoder_{run.name}"
    assert (work / "fold_0").is_dir()
    again = _cross_fit(_config(tiny_distilbert, save_models="lora"), data, out)
    assert [f["decision"] for f in again.plan["folds"]] == ["checkpoint"] * 2
    assert not (work / "fold_0").exists() and not (work / TOKENIZER_DIR).exists() and not (work / MANIFEST).exists()
    with pytest.raises(ValueError, match="save_models"):
        EncoderConfig(save_models="some")


def test_planned_max_length_is_recorded_and_used_at_predict(tiny_distilbert, data, tmp_path, monkeypatch):
    """The time-budget plan halves max_length (160 -> 80); prediction must use 80, not the configured 160."""

    def project(probe, *args):  # the configured length is projected not to fit, half of it fits
        return {"fit_s": 1e6 if probe.max_length == 160 else 1.0, "test_s": 1.0}

    monkeypatch.setattr(cross_fit, "project_fold_seconds", project)
    config = _config(tiny_distilbert, max_length=160, min_max_length=80, probe_steps=2)
    run = _cross_fit(config, data, tmp_path, deadline=time.monotonic() + 3600)
    assert run.plan["max_length"]["used"] == 80 and run.complete
    work = tmp_path / f"encoder_{run.name}"
    inputs = json.loads((work / MANIFEST).read_text())["inputs"]
    assert inputs["max_length"] == 80 and inputs["configured_max_length"] == 160
    assert inputs["budget_shares"] == pytest.approx([0.2, 0.4, 0.4]) and inputs["swap_average"] is True
    models = EncoderFoldModels.load(work)
    assert models.config.max_length == 80
    expected = _test_proba(run)
    used = np.abs(models.predict_proba(data[1]) - expected).max()
    assert used < 1e-5
    # the check means something: the configured length gives other probabilities on these long battles
    # (the tiny models are near-uniform, so "other" is measured against the reload's own float noise)
    models.config.max_length = 160
    configured = np.abs(models.predict_proba(data[1]) - expected).max()
    assert configured > 20 * max(used, 1e-9), (configured, used)


@pytest.mark.slow
def test_two_prediction_processes_match_in_process(bert_run, data):
    """The multi-GPU route (one process per device, contiguous row chunks), run as 2 CPU processes."""
    out, run = bert_run
    work = out / f"encoder_{run.name}"
    in_process = predict_proba_multi_gpu(work, data[1], n_processes=1)
    np.testing.assert_allclose(in_process, _test_proba(run), atol=1e-5)
    two = predict_proba_multi_gpu(work, data[1], n_processes=2)
    assert two.shape == (len(data[1]), 3)
    np.testing.assert_allclose(two, in_process, atol=1e-5)


def test_rows_reach_the_workers_without_pickle(data, tmp_path):
    """The worker processes get parquet (it cannot run code on load), and read back the same battles."""
    from encoders.parallel_predict import ROW_COLUMNS, read_rows, write_rows

    battles = data[1]
    write_rows(battles, tmp_path / "rows.parquet")
    assert (tmp_path / "rows.parquet").read_bytes()[:4] == b"PAR1"
    back = read_rows(tmp_path / "rows.parquet")
    pd.testing.assert_frame_equal(back, battles[list(ROW_COLUMNS)].reset_index(drop=True))
    assert all(isinstance(t, list) for t in back["a_turns"])
