"""Load a local Hugging Face model as a 3-class sequence classifier, with LoRA for decoder LLMs.

Decoder LLMs (Gemma-2, Llama-3, Qwen2.5, ...) get a LoRA adapter through peft; their new
classification head is listed in ``modules_to_save`` so it is saved with the adapter and
restored on load (a known failure in peer tools: the head is lost on save/merge and a
random one is silently used).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from arena_schema import N_CLASSES
from encoders.gguf import resolve_model_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DECODER_TYPES = {
    "llama",
    "gemma",
    "gemma2",
    "gemma3",
    "qwen2",
    "qwen3",
    "mistral",
    "mixtral",
    "phi",
    "phi3",
    "gpt2",
    "gpt_neox",
    "falcon",
    "olmo",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
}
HEAD_NAMES = ("score", "classifier", "pre_classifier", "pooler")
ADAPTER_MARK = "arena_pref_adapter.json"


@contextmanager
def _quiet_peft_probe():
    """peft reads ``model.is_gradient_checkpointing`` (and for k-bit calls ``gradient_checkpointing_enable``),
    which transformers 5.x deprecates; the calls are peft's, not ours, so only those warnings are silenced
    (transformers 4.x has no such warnings)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(is_gradient_checkpointing|gradient_checkpointing_enable).*", category=FutureWarning
        )
        yield


def _enable_checkpointing(model) -> None:
    """transformers 5.x renamed gradient to activation checkpointing; 4.x has only the old name."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False


def is_decoder(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return config.model_type in DECODER_TYPES or any(a.endswith("ForCausalLM") for a in archs)


def _head_modules(model) -> list[str]:
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    return [h for h in HEAD_NAMES if h in names]


def _lora_targets(model) -> list[str]:
    """Attention and MLP projections found in this model (names differ by family)."""
    wanted = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "query",
        "key",
        "value",
        "dense",
        "c_attn",
        "c_proj",
        "q_lin",
        "k_lin",
        "v_lin",
        "out_lin",
    )
    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    heads = set(HEAD_NAMES)
    return [w for w in wanted if w in names and w not in heads]


def quantization_config(bits: int | None):
    if bits is None:
        return None
    if not torch.cuda.is_available():
        raise RuntimeError(f"{bits}-bit loading needs CUDA (bitsandbytes); this machine has no GPU")
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float16,
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"load_in_bits must be 4 or 8, got {bits}")


def load_tokenizer(model_path: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer; a missing pad token becomes EOS (decoder LLMs ship none): batches are padded on
    the right and the classifier pools the last non-pad token, which right padding leaves in place."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_model_path(model_path)), local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_classifier(
    model_path: str | Path,
    *,
    lora: bool | None = None,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    load_in_bits: int | None = None,
    gradient_checkpointing: bool = False,
    pad_token_id: int | None = None,
):
    """A fresh 3-class classifier from ``model_path`` (weights of the base, a new head)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model_path(model_path)  # a .gguf file: its cached fp32 folder
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; give a local Hugging Face model folder")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True, num_labels=N_CLASSES)
    if pad_token_id is not None:
        config.pad_token_id = pad_token_id
    decoder = is_decoder(config)
    use_lora = decoder if lora is None else lora
    kwargs = {}
    qconfig = quantization_config(load_in_bits)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    # a checkpoint fine-tuned with another number of labels keeps its body; the head starts anew
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), config=config, local_files_only=True, ignore_mismatched_sizes=True, **kwargs
    )
    if gradient_checkpointing:
        _enable_checkpointing(model)
    if use_lora:
        model = _with_lora(model, lora_r, lora_alpha, lora_dropout, qconfig is not None, gradient_checkpointing)
    log.info("loaded %s (%s%s)", path.name, config.model_type, ", LoRA" if use_lora else "")
    return model


def _with_lora(model, r: int, alpha: int, dropout: float, quantized: bool, gradient_checkpointing: bool):
    """``model`` with LoRA adapters on its attention / MLP projections and a fully trained head; a quantized
    model is first made trainable (k-bit preparation)."""
    from peft import LoraConfig, TaskType, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        with _quiet_peft_probe():
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    lora_config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=_lora_targets(model),
        modules_to_save=_head_modules(model),
    )
    with _quiet_peft_probe():
        return get_peft_model(model, lora_config)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


def save_classifier(model, tokenizer, directory: str | Path, base_path: str | Path) -> Path:
    """Save weights as safetensors (adapter + head only for LoRA) and the tokenizer (skipped when
    ``tokenizer`` is None: fold models of one encoder share one saved tokenizer); remember the base for LoRA."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    mark = {"lora": is_lora(model), "base_model": str(Path(base_path).resolve())}
    (directory / ADAPTER_MARK).write_text(json.dumps(mark))
    return directory


def load_trained_classifier(
    directory: str | Path,
    base_path: str | Path | None = None,
    *,
    pad_token_id: int | None = None,
    load_in_bits: int | None = None,
):
    """Load what :func:`save_classifier` wrote: a full model, or base + LoRA adapter + saved head.

    ``base_path`` overrides the remembered base (the base weights may live elsewhere at predict time);
    ``pad_token_id`` is needed for LoRA when the tokenizer was not saved next to the weights."""
    from transformers import AutoModelForSequenceClassification

    directory = Path(directory)
    mark = json.loads((directory / ADAPTER_MARK).read_text())
    if not mark["lora"]:
        kwargs = {}
        qconfig = quantization_config(load_in_bits)
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        return AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True, **kwargs)
    from peft import PeftModel

    if pad_token_id is None:
        pad_token_id = load_tokenizer(directory).pad_token_id
    base = load_classifier(
        base_path or mark["base_model"], lora=False, pad_token_id=pad_token_id, load_in_bits=load_in_bits
    )
    with _quiet_peft_probe():
        return PeftModel.from_pretrained(base, str(directory), is_trainable=False)
