"""Tiny Hugging Face models built offline: random weights, a tokenizer trained on fixture text.

A DistilBERT-shaped encoder and a Llama-shaped decoder, saved as ordinary local model
folders, so the encoder code paths run in seconds on a CPU with no hub.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WORDS

CORPUS = [
    " ".join(WORDS[i:] + WORDS[:i]) + " <prompt>: <response_a>: <response_b>: Question Answer ##."
    for i in range(len(WORDS))
]


def _trained(tokenizer, trainer):
    """``tokenizer`` trained on the fixture corpus (the words every fixture battle is made of)."""
    tokenizer.train_from_iterator(CORPUS * 5, trainer)
    return tokenizer


def _wordpiece(vocab_size: int = 200):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = _trained(tok, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
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


def _bpe(vocab_size: int = 200):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet
    )
    return _trained(tok, trainer)


SMALL = dict(num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)  # HF's common config names


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
        position_buckets=64,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=0,
        **SMALL,
    )
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
