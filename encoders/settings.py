"""Settings of one transformer fine-tuning run (part of pipelines.config.run_config.RunConfig)."""

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
    workers: int | None = field(
        default=None,
        metadata={
            "help": "processes that fine-tune each fold data-parallel (default: one per GPU with several GPUs, else "
            "1 in the run's process); more than 1 on a machine without GPUs runs them on the CPU (gloo)"
        },
    )
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

    def require_model_path(self) -> str:
        """``model_path``; unset only in a config not yet pointed at a model, which nothing can load."""
        if self.model_path is None:
            raise ValueError("encoder settings: model_path is unset (a local model folder or .gguf file)")
        return self.model_path

    @property
    def resolved_name(self) -> str:
        path = Path(self.require_model_path())
        return self.name or (path.stem if path.suffix.lower() == ".gguf" else path.name).replace(" ", "_")

    # which fold models cross-fit keeps on disk for later prediction (EncoderFoldModels):
    # all | lora (only LoRA adapters + heads, not fully fine-tuned models) | none
    save_models: str = "all"

    SAVE_MODELS_CHOICES = ("all", "lora", "none")

    PRECISIONS = ("auto", "fp32", "fp16", "bf16")
    AT_LEAST_ONE = (
        "max_length",
        "batch_size",
        "eval_batch_size",
        "grad_accum",
        "lora_r",
        "lora_alpha",
        "min_max_length",
    )

    def __post_init__(self) -> None:
        """Settings that cannot train are refused here, before any fold starts (flag ``--encoder-<field>``)."""
        if self.save_models not in self.SAVE_MODELS_CHOICES:
            raise ValueError(f"save_models must be one of {self.SAVE_MODELS_CHOICES}, got {self.save_models!r}")
        problems = [f"{name} {getattr(self, name)}: must be at least 1" for name in self.AT_LEAST_ONE
                    if getattr(self, name) < 1]  # fmt: skip
        problems += [f"{name} {getattr(self, name)}: must be at least 1 or unset"
                     for name in ("max_train_rows", "max_steps") if getattr(self, name) is not None
                     and getattr(self, name) < 1]  # fmt: skip
        if not 0 < self.prompt_share < 1:
            problems.append(f"prompt_share {self.prompt_share}: must be between 0 and 1")
        if not (self.epochs > 0 and self.learning_rate > 0):
            problems.append(f"epochs {self.epochs}, learning_rate {self.learning_rate}: must be positive")
        if not (0 <= self.warmup_ratio < 1 and 0 <= self.lora_dropout < 1 and self.weight_decay >= 0):
            problems.append("warmup_ratio and lora_dropout must be in [0, 1), weight_decay >= 0")
        if self.precision not in self.PRECISIONS:
            problems.append(f"precision {self.precision!r}: one of {self.PRECISIONS}")
        if self.load_in_bits not in (None, 4, 8):
            problems.append(f"load_in_bits {self.load_in_bits}: 4, 8 or unset")
        if self.workers is not None and self.workers < 1:
            problems.append(f"workers {self.workers}: must be at least 1 or unset")
        if self.seed < 0 or self.probe_steps < 0:
            problems.append(f"seed {self.seed}, probe_steps {self.probe_steps}: must be >= 0")
        if problems:
            raise ValueError(f"encoder settings: {'; '.join(problems)} (flags --encoder-<setting>)")
