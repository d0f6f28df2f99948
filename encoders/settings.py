"""Settings of one transformer fine-tuning run (part of pipelines.config.RunConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EncoderConfig:
    """Fine-tuning of a local Hugging Face model (see encoders/)."""

    model_path: str | None = None
    name: str | None = None  # defaults to the model folder's name
    max_length: int = 512
    prompt_share: float = 0.2
    epochs: float = 1.0
    learning_rate: float = 2e-5
    batch_size: int = 8
    eval_batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    lora: bool | None = None  # None: on for decoder LLMs, off for encoders
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    load_in_bits: int | None = None  # 4 or 8 through bitsandbytes, CUDA only
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto | fp32 | fp16 | bf16
    swap_augment: bool = True
    max_train_rows: int | None = None  # subsample training rows per fold (quick runs)
    max_steps: int | None = None  # stop each fold's training after this many optimiser steps
    seed: int = 42
    # time-budget planning (only with a deadline): time this many training steps before fold 0 and
    # halve max_length (not below min_max_length) while all folds would not fit; 0 turns it off
    probe_steps: int = 20
    min_max_length: int = 128

    PLANNING_FIELDS = ("seed", "probe_steps", "min_max_length")  # do not change what a fold computes

    @property
    def resolved_name(self) -> str:
        return self.name or Path(self.model_path).name.replace(" ", "_")

    # which fold models cross-fit keeps on disk for later prediction (EncoderFoldModels):
    # all | lora (only LoRA adapters + heads, not fully fine-tuned models) | none
    save_models: str = "all"

    SAVE_MODELS_CHOICES = ("all", "lora", "none")

    def __post_init__(self) -> None:
        if self.save_models not in self.SAVE_MODELS_CHOICES:
            raise ValueError(f"save_models must be one of {self.SAVE_MODELS_CHOICES}, got {self.save_models!r}")
