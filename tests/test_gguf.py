"""A .gguf file as a model input: converted once to a cached fp32 folder keyed by content, clear errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import gguf as gguf_mod
from encoders.classifier import TransformerClassifier
from encoders.gguf import GGUFError, converted_folder, resolve_model_path
from encoders.inputs import BattleEncoder
from encoders.model import load_tokenizer
from pipelines.bundle.base_weights import match_base, model_identity
from pipelines.config.run_config import RunConfig
from pipelines.data.battles import load_battles
from pipelines.preflight import PreflightError, check_encoders
from tests.conftest import make_battles
from tests.tiny_models import tiny_encoder_config


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf_battles") / "train.csv"
    make_battles(24, seed=3).to_csv(path, index=False)
    return load_battles(path)[0]


def test_conversion_keeps_weights_and_vocabulary(tiny_llama_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model_path(tiny_llama_gguf, tmp_path / "cache")
    assert folder == converted_folder(tiny_llama_gguf, tmp_path / "cache") and (folder / "config.json").is_file()
    original = tiny_llama_gguf.parent / "tiny-llama-hf"
    text = "question answer <prompt> hello there"
    ids_a = AutoTokenizer.from_pretrained(str(original))(text)["input_ids"]
    ids_b = AutoTokenizer.from_pretrained(str(folder))(text, add_special_tokens=False)["input_ids"]
    assert ids_a == ids_b
    x = torch.tensor([ids_a])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(str(original))(x).logits
        got = AutoModelForCausalLM.from_pretrained(str(folder))(x).logits
    torch.testing.assert_close(got, expected)  # q/k permutation undone, nothing lost in fp32


def test_cache_is_keyed_by_content(tiny_llama_gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = resolve_model_path(tiny_llama_gguf, cache)
    monkeypatch.setattr(gguf_mod, "_convert", lambda *a: pytest.fail("a cached conversion was redone"))
    copy = tmp_path / "elsewhere" / tiny_llama_gguf.name
    copy.parent.mkdir()
    shutil.copy(tiny_llama_gguf, copy)
    assert resolve_model_path(copy, cache) == first  # same bytes at another path: same folder
    changed = tmp_path / "changed" / tiny_llama_gguf.name
    changed.parent.mkdir()
    changed.write_bytes(tiny_llama_gguf.read_bytes() + b"\0")
    assert converted_folder(changed, cache) != first  # other bytes, same name: another folder
    monkeypatch.setenv(gguf_mod.CACHE_ENV, str(cache))
    assert resolve_model_path(tiny_llama_gguf) == first  # the environment variable names the cache
    assert resolve_model_path(tmp_path) == tmp_path  # a folder is passed through


def test_errors_name_the_file_and_what_is_missing(tiny_llama_gguf, tmp_path, monkeypatch):
    import importlib.util

    with pytest.raises(GGUFError, match="nothing.gguf: no such GGUF file"):
        resolve_model_path(tmp_path / "nothing.gguf", tmp_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match="junk.gguf: not a readable GGUF file"):
        resolve_model_path(junk, tmp_path / "cache")
    import gguf

    other = tmp_path / "other-arch.gguf"
    writer = gguf.GGUFWriter(str(other), "made-up-arch")
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="other-arch.gguf: GGUF architecture 'made-up-arch' is not one"):
        resolve_model_path(other, tmp_path / "cache")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real_find_spec(n, *a))
    with pytest.raises(GGUFError, match=r"tiny-llama.gguf: .*needs the `gguf` package \(pip install gguf\)"):
        resolve_model_path(tiny_llama_gguf, tmp_path / "fresh-cache")


def test_preflight_accepts_gguf_and_rejects_a_bad_one(tiny_llama_gguf, tmp_path):
    from encoders.settings import EncoderConfig

    config = RunConfig(train_path="t", test_path="s", out_dir=str(tmp_path))
    config.encoders = [EncoderConfig(model_path=str(tiny_llama_gguf))]
    check_encoders(config)
    assert config.encoders[0].resolved_name == "tiny-llama"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"xx")
    config.encoders = [EncoderConfig(model_path=str(junk))]
    with pytest.raises(PreflightError, match="--encoder .*junk.gguf: not a readable GGUF file"):
        check_encoders(config)


def test_gguf_as_encoder_trains_saves_and_reloads_from_the_file(tiny_llama_gguf, battles, tmp_path, monkeypatch):
    monkeypatch.setenv(gguf_mod.CACHE_ENV, str(tmp_path / "cache"))
    config = tiny_encoder_config(tiny_llama_gguf, max_steps=3, eval_batch_size=16)
    clf = TransformerClassifier(config, progress=False).fit(battles, battles["label"].to_numpy())
    assert hasattr(clf.model_, "peft_config")  # a Llama from GGUF gets LoRA like any decoder
    p = clf.predict_proba(battles)
    clf.save(tmp_path / "saved")
    again = TransformerClassifier.from_saved(tmp_path / "saved", config).predict_proba(battles)
    np.testing.assert_allclose(again, p, atol=1e-6)


def test_pad_equal_to_eos_is_not_appended(tiny_llama, tiny_distilbert):
    llama_tok = load_tokenizer(tiny_llama)
    assert llama_tok.pad_token_id == llama_tok.eos_token_id  # decoder LLMs ship no pad token
    ids = BattleEncoder(llama_tok, 64).encode(["question"], ["answer"], ["answer"])
    assert ids[-1] != llama_tok.pad_token_id  # the head pools the last non-pad token: a real one
    bert_tok = load_tokenizer(tiny_distilbert)
    assert BattleEncoder(bert_tok, 64).encode(["question"], ["a"], ["b"])[-1] == bert_tok.sep_token_id


def test_gguf_base_is_matched_by_content(tiny_llama_gguf, tmp_path):
    identity = model_identity(tiny_llama_gguf)
    assert identity["model_type"] == "llama" and len(identity["sha256"]) == 64
    same = tmp_path / "attached" / "renamed.gguf"
    same.parent.mkdir()
    shutil.copy(tiny_llama_gguf, same)
    other = tmp_path / "attached2" / tiny_llama_gguf.name
    other.parent.mkdir()
    other.write_bytes(tiny_llama_gguf.read_bytes() + b"\0")
    folder = Path(tiny_llama_gguf.parent / "tiny-llama-hf")
    assert match_base(identity, [other, folder, same]) == same


def test_gguf_as_embedder(tiny_llama_gguf, tmp_path, monkeypatch):
    from encoders.embedder import TextEmbedder

    monkeypatch.setenv(gguf_mod.CACHE_ENV, str(tmp_path / "cache"))
    embedder = TextEmbedder(tiny_llama_gguf, max_length=16, precision="fp32")
    assert embedder.model_path == converted_folder(tiny_llama_gguf, tmp_path / "cache")
    vectors = embedder.embed(["question answer", "hello", "question answer"])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    np.testing.assert_allclose(vectors[0], vectors[2])
