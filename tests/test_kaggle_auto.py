"""The notebook's default ``ARENA_PREF_ENCODERS=auto``: every attached model is fine-tuned under the time-budget
planner, encoders first; a decoder LLM whose probe projects that its folds do not fit is left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from encoders import cross_fit
from encoders.settings import EncoderConfig
from pipelines.runtime.paths import find_model_inputs, training_order
from tests.test_kaggle import (  # noqa: F401 (offline_dataset is a fixture)
    FAST_ARGS,
    FakeClock,
    _check_submission,
    _fake_classifier,
    _fake_kaggle,
    _folds_setup,
    _run_notebook,
    offline_dataset,
)


def test_auto_finds_every_model_input_encoders_first(tmp_path):
    def folder(name: str, config: dict) -> Path:
        path = tmp_path / "input" / name
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(config))
        (path / "model.safetensors").write_bytes(b"w")
        return path

    llama = folder("a-llama", {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    deberta = folder("z-deberta", {"model_type": "deberta-v2"})
    gguf = tmp_path / "input" / "b-gguf" / "small.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    (tmp_path / "input" / "competition").mkdir()  # no config.json: not a model
    found = find_model_inputs(tmp_path / "input")
    assert sorted(found) == sorted([llama, deberta, gguf])
    assert training_order(found) == [deberta, llama, gguf]


@pytest.mark.parametrize(
    "model, skip_unless_fits, left_out",
    [("tiny_llama", None, True), ("tiny_distilbert", None, False), ("tiny_distilbert", True, True)],
)
def test_a_decoder_projected_not_to_fit_is_left_out(tmp_path, monkeypatch, request, model, skip_unless_fits, left_out):
    clock, seen = FakeClock(), []
    # 1 s per step: after the probe (4 steps) 8 s are left; 3 folds x 5 steps (+ OOF, x 1.1) do not fit
    steps = lambda c, n: (float(c.max_steps or 5), c.max_steps or 5)  # noqa: E731
    monkeypatch.setattr(cross_fit, "TransformerClassifier", _fake_classifier(clock, steps, 0.01, seen))
    monkeypatch.setattr(cross_fit, "next_max_length", lambda length, floor: None)  # no shorter length to try
    battles, y, folds, test = _folds_setup()
    path = request.getfixturevalue(model)
    config = EncoderConfig(model_path=str(path), probe_steps=4, skip_unless_fits=skip_unless_fits)
    run = cross_fit.cross_fit_encoder(
        config, battles, y, folds, test, tmp_path, deadline=12, progress=False, clock=clock
    )
    fits = [s for s in seen if s[0] == "fit" and s[2] != 4]  # fold trainings (the probe has max_steps 4)
    assert run.plan["max_length"]["probes"][-1]["fits"] is False
    if left_out:
        assert fits == [] and run.folds_done == [] and "skip_unless_fits" in run.plan["stopped"]["reason"]
    else:  # an encoder starts (the per-fold planner stops it later): the old behaviour
        assert len(fits) >= 1


@pytest.mark.slow
def test_notebook_default_fine_tunes_an_attached_model(tmp_path, offline_dataset, tiny_distilbert):  # noqa: F811
    root = _fake_kaggle(tmp_path, offline_dataset)
    model = Path(shutil.copytree(tiny_distilbert, root / "input" / "tiny-distilbert"))
    proc = _run_notebook(  # no ARENA_PREF_ENCODERS: the default, auto
        tmp_path,
        root,
        ARENA_PREF_FULL_RUN_ARGS=FAST_ARGS
        + " --encoder-max-steps 2 --encoder-max-length 64 --encoder-min-max-length 32 --encoder-probe-steps 2",
    )
    assert "encoders 'auto'" in proc.stdout and str(model) in proc.stdout
    _check_submission(root)
    report = json.loads((root / "working" / "arena_pref_run" / "report.json").read_text())
    plan = report["plan"]
    assert plan["encoders"] == ["tiny-distilbert"] and plan["encoders_finished"] == ["tiny-distilbert"]
    enc = plan["encoder_runs"]["tiny-distilbert"]
    assert enc["max_length"]["probes"] and enc["max_length"]["probes"][0]["fits"]  # planned under the budget
    assert (root / "working" / "arena_pref_run" / "oof_tiny-distilbert.parquet").exists()
