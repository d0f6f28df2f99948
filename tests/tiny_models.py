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


def _wordpiece(vocab_size: int = 200):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS * 5,
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok


def _bert_style_tokenizer():
    """A WordPiece tokenizer and its transformers wrapper with BERT's special tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = _wordpiece()
    return tok, PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def _bpe(vocab_size: int = 200):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS * 5,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return tok


def build_tiny_bert(path: Path) -> Path:
    """A random 1-layer BERT encoder (no head) with the suite's fixture tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tok, fast = _bert_style_tokenizer()
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path


def build_tiny_distilbert(path: Path) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    tok, fast = _bert_style_tokenizer()
    config = DistilBertConfig(
        vocab_size=tok.get_vocab_size(),
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    DistilBertForSequenceClassification(config).save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path


def build_tiny_llama(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tok = _bpe()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=512
    )
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
    )
    LlamaForCausalLM(config).save_pretrained(str(path))  # a causal LM checkpoint, as real LLMs ship
    fast.save_pretrained(str(path))
    return path


def build_tiny_deberta_v2(path: Path) -> Path:
    """DeBERTa-v2/v3-shaped (relative attention); the tokenizer type does not matter to the model code."""
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    tok, fast = _bert_style_tokenizer()
    config = DebertaV2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=64,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=0,
    )
    DebertaV2Model(config).save_pretrained(str(path))  # a base checkpoint without a head, as released
    fast.save_pretrained(str(path))
    return path
