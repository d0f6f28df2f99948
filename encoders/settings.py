"""Settings of one transformer fine-tuning run (part of pipelines.config.RunConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EncoderConfig:
    """Fine-tuning of a local Hugging Face model (see encoders/). Each field's help is its ``--encoder-*`` flag's."""

    model_path: str | None = field(
        default=None, metadata={"help": "local Hugging Face model folder or .gguf file", "cli": False}
    )
    name: str | None = field(default=None, metadata={"help": "defaults to the model folder's name", "cli": False})
    max_length: int = field(default=512, metadata={"help": "tokens per (prompt, A, B) input"})
    prompt_share: float = field(default=0.2, metadata={"help": "share of max_length for the prompt"})
    epochs: float = field(default=1.0, metadata={"help": "training epochs per fold"})
    learning_rate: float = field(default=2e-5, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=8, metadata={"help": "training batch size per device"})
    eval_batch_size: int = field(default=32, metadata={"help": "inference batch size"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps for linear warm-up"})
    lora: bool | None = field(default=None, metadata={"help": "LoRA adapters; default: on for decoder LLMs only"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    load_in_bits: int | None = field(default=None, metadata={"help": "4 or 8 through bitsandbytes, CUDA only"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | fp16 | bf16"})
    swap_augment: bool = field(default=True, metadata={"help": "train on A/B-swapped copies too"})
    max_train_rows: int | None = field(default=None, metadata={"help": "subsample training rows per fold (quick runs)"})
    max_steps: int | None = field(
        default=None, metadata={"help": "stop each fold's training after this many optimiser steps"}
    )
    seed: int = field(default=42, metadata={"help": "seed of the encoder's training"})
    # time-budget planning (only with a deadline): time this many training steps before fold 0 and
    # halve max_length (not below min_max_length) while all folds would not fit; 0 turns it off
    probe_steps: int = field(
        default=20,
        metadata={"help": "with a time budget: training steps timed before fold 0 to plan max_length (0: off)"},
    )
    min_max_length: int = field(
        default=128, metadata={"help": "with a time budget: max_length is never shortened below this"}
    )

    skip_unless_fits: bool | None = field(
        default=None,
        metadata={
            "help": "with a time budget: leave the encoder out when the probe projects its folds do not fit even at "
            "min_max_length (default: on for decoder LLMs, whose one fold could take the whole budget)"
        },
    )

    # do not change what a fold computes
    PLANNING_FIELDS = ("seed", "probe_steps", "min_max_length", "skip_unless_fits")

    @property
    def resolved_name(self) -> str:
        path = Path(self.model_path)
        return self.name or (path.stem if path.suffix.lower() == ".gguf" else path.name).replace(" ", "_")

    # which fold models cross-fit keeps on disk for later prediction (EncoderFoldModels):
    # all | lora (only LoRA adapters + heads, not fully fine-tuned models) | none
    save_models: str = "all"

    SAVE_MODELS_CHOICES = ("all", "lora", "none")

    def __post_init__(self) -> None:
        if self.save_models not in self.SAVE_MODELS_CHOICES:
            raise ValueError(f"save_models must be one of {self.SAVE_MODELS_CHOICES}, got {self.save_models!r}")
