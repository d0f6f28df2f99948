"""Tiny Hugging Face models built offline: random weights, a tokenizer made from the fixture words.

A DistilBERT-shaped encoder and a Llama-shaped decoder (and BERT, DeBERTa-v2), saved as ordinary
local model folders, so the encoder code paths run in seconds on a CPU with no hub. The tokenizers'
vocabularies are written out, not trained: ``tokenizers``' trainers break frequency ties in hash
order, so two trained builds differ, and with them every fine-tuned probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from tests.conftest import WORDS

MARKERS = ["<prompt>", "<response_a>", "<response_b>", "question", "answer"]  # what the encoders' inputs add


def _pieces(word: str) -> list[str]:
    """``word`` and each of its prefixes longer than one character (the left-to-right BPE merges)."""
    return [word[:i] for i in range(2, len(word) + 1)]


def _wordpiece():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in WORDS + MARKERS for c in w} | set("0123456789.,:;!?#*-_<>()[]'\"/"))
    words = sorted({w for w in WORDS + MARKERS if w.isalnum()})
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, *chars, *(f"##{c}" for c in chars), *words]))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_sep = [("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=cls_sep
    )
    return tok


def _bert_style_tokenizer():
    """A WordPiece tokenizer and its transformers wrapper with BERT's special tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = _wordpiece()
    specials = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return tok, PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **specials)


def _bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The 256 byte symbols, plus merges that spell each fixture word."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges: list[tuple[str, str]] = []
    for word in sorted({w for w in WORDS + MARKERS} | {"\u0120" + w for w in WORDS + MARKERS}):  # Ġ: a leading space
        merges += [(piece[:-1], piece[-1]) for piece in _pieces(word) if (piece[:-1], piece[-1]) not in merges]
    tokens = ["<unk>", "<s>", "</s>", *alphabet, *(a + b for a, b in merges)]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges


def _bpe():
    """Byte-level BPE (any text encodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = _bpe_vocab()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


class SmallSizes(TypedDict):
    """HF's common config names for the size of a model."""

    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


SMALL: SmallSizes = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def _save(path: Path, model_class, config, tokenizer) -> Path:
    """Seeded random weights and the tokenizer, saved as an ordinary local model folder."""
    import torch

    torch.manual_seed(0)
    model_class(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def build_tiny_bert(path: Path) -> Path:
    """A random 1-layer BERT encoder (no head) with the suite's fixture tokenizer."""
    from transformers import BertConfig, BertModel

    tok, fast = _bert_style_tokenizer()
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, max_position_embeddings=128, pad_token_id=0, **SMALL
    )
    return _save(path, BertModel, config, fast)


def build_tiny_distilbert(path: Path) -> Path:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tok, fast = _bert_style_tokenizer()
    config = DistilBertConfig(
        vocab_size=tok.get_vocab_size(), dim=32, n_layers=1, n_heads=2, hidden_dim=64, pad_token_id=0
    )
    return _save(path, DistilBertForSequenceClassification, config, fast)


def build_tiny_llama(path: Path) -> Path:
    """A causal LM checkpoint, as real LLMs ship."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = _bpe()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=512
    )
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
        **SMALL,
    )
    return _save(path, LlamaForCausalLM, config, fast)


def build_tiny_deberta_v2(path: Path) -> Path:
    """DeBERTa-v2/v3-shaped (relative attention), a base checkpoint without a head, as released."""
    from transformers import DebertaV2Config, DebertaV2Model

    tok, fast = _bert_style_tokenizer()
    config = DebertaV2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        max_position_embeddings=512,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=0,
        **SMALL,
    )
    config.position_buckets = 64  # read by the model; DebertaV2Config's typed signature leaves it out
    return _save(path, DebertaV2Model, config, fast)


def tiny_encoder_config(model: Path, **overrides):
    """An EncoderConfig that fine-tunes a tiny model for a few fp32 steps on a CPU."""
    from encoders.settings import EncoderConfig

    base = dict(
        model_path=str(model),
        max_length=96,
        batch_size=8,
        eval_batch_size=8,
        max_steps=3,
        learning_rate=1e-3,
        precision="fp32",
    )
    return EncoderConfig(**{**base, **overrides})


def _permute_qk(weight, n_head: int):
    """llama.cpp's row order for q/k projections (rotary halves interleaved); transformers undoes it on load."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def build_tiny_llama_gguf(folder: Path, gguf_path: Path) -> Path:
    """The tiny Llama (built in ``folder``) written as an fp32 GGUF file, as llama.cpp's converter lays it out:
    the same weights and byte-level BPE vocabulary, so a conversion back must give the same logits."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    build_tiny_llama(folder)
    config = AutoConfig.from_pretrained(str(folder))
    vocab_ids, merge_pairs = _bpe_vocab()
    vocab = sorted(vocab_ids.items(), key=lambda kv: kv[1])
    merges = [f"{a} {b}" for a, b in merge_pairs]
    weights = load_file(str(folder / "model.safetensors"))
    writer = gguf.GGUFWriter(str(gguf_path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if t in ("<unk>", "<s>", "</s>") else 1 for t, _ in vocab])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_unk_token_id(vocab_ids["<unk>"])
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for key, value in weights.items():
        if key in names:
            writer.add_tensor(names[key], value)
            continue
        _, _, layer, *rest = key.split(".")
        part = parts[".".join(rest[:-1])]
        if part == "attn_q":
            value = _permute_qk(value, config.num_attention_heads)
        elif part == "attn_k":
            value = _permute_qk(value, config.num_key_value_heads)
        writer.add_tensor(f"blk.{layer}.{part}.weight", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path
