"""Fine-tune a transformer on battles: ``fit(battles, y)`` / ``predict_proba(battles)``.

Training is swap-augmented (each battle also as B-vs-A with the label swapped) and prediction
swap-averaged, like the stacker. ``accelerate`` handles devices, mixed precision (fp16 on
CUDA without bf16 such as T4, bf16 on newer GPUs and on CPU), gradient accumulation and,
under ``accelerate launch``/torchrun, data-parallel training on several GPUs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from arena_schema import N_CLASSES, swap_labels, swap_proba
from encoders.inputs import BattleEncoder, length_sorted_batches
from encoders.model import load_classifier, load_tokenizer, load_trained_classifier, save_classifier
from encoders.settings import EncoderConfig

if TYPE_CHECKING:
    from accelerate import Accelerator
    from accelerate.scheduler import AcceleratedScheduler
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision value for this machine."""
    if precision != "auto":
        return {"fp32": "no"}.get(precision, precision)
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # bf16 autocast only pays on CPUs with bf16 instructions; elsewhere it is emulated (measured ~7x slower
    # than fp32 on an AVX2-only EPYC: benchmarks/results/embed_throughput.json)
    return "bf16" if cpu_has_native_bf16() else "no"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pad_batch(sequences: list[list[int]], pad_id: int, labels: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence in this batch only (right side)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


@dataclass
class EncodedBattles:
    """Token ids of battles as (A, B) and, for swap-averaging, as (B, A)."""

    direct: list[list[int]]
    swapped: list[list[int]] | None


@dataclass
class TrainingData:
    """Token ids and labels of the (swap-augmented) training sequences."""

    sequences: list[list[int]]
    labels: list[int]


@dataclass
class TrainingSetup:
    """What ``accelerate.prepare`` returned, and the optimiser steps this process takes."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    scheduler: AcceleratedScheduler
    params: list[torch.nn.Parameter]
    total_steps: int


@dataclass
class TrainingResult:
    """What the optimiser loop did: steps, whether the deadline ended it, losses and step times."""

    steps: int = 0
    stopped_early: bool = False
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # wall time per optimiser step

    @property
    def train_loss(self) -> float:
        return float(np.mean(self.losses[-50:])) if self.losses else float("nan")


class TransformerClassifier:
    """One fine-tuned model. ``deadline`` (time.monotonic seconds) ends training early, gracefully."""

    def __init__(self, config: EncoderConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.model_: torch.nn.Module | None = None
        self.tokenizer_: PreTrainedTokenizerBase | None = None
        self.accelerator_: Accelerator | None = None
        self.stopped_early_ = False
        self.steps_ = 0
        self.timing_: dict = {}  # load_s, encode_s, n_sequences, num_processes of the last fit

    def _accelerator(self) -> Accelerator:
        from accelerate import Accelerator

        if self.accelerator_ is None:
            if "WORLD_SIZE" not in os.environ:
                # accelerate keeps process-wide state; one process may fine-tune models with different
                # precisions one after another (several --encoder runs, tests), so start it afresh
                from accelerate.state import AcceleratorState

                AcceleratorState._reset_state(reset_partial_state=True)
            self.accelerator_ = Accelerator(
                cpu=not torch.cuda.is_available(),  # lets torchrun on CPUs use gloo DDP
                mixed_precision=resolve_precision(self.config.precision),
                gradient_accumulation_steps=self.config.grad_accum,
            )
        return self.accelerator_

    def _tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer_ is None:
            raise RuntimeError("fit first")
        return self.tokenizer_

    def _pad_id(self) -> int:
        pad_id = self._tokenizer().pad_token_id
        if pad_id is None:  # load_tokenizer falls back to EOS, then UNK
            raise ValueError("the tokenizer has no pad, EOS or UNK token to pad batches with")
        return pad_id

    def _encoder(self) -> BattleEncoder:
        return BattleEncoder(self._tokenizer(), self.config.max_length, self.config.prompt_share)

    def _encode(self, battles: pd.DataFrame, swapped: bool = False) -> list[list[int]]:
        a, b = ("b_turns", "a_turns") if swapped else ("a_turns", "b_turns")
        return self._encoder().encode_many(battles["prompt_turns"], battles[a], battles[b])

    def fit(self, battles: pd.DataFrame, y: np.ndarray, deadline: float | None = None) -> TransformerClassifier:
        torch.manual_seed(self.config.seed)
        accelerator = self._accelerator()
        started = time.monotonic()
        model = self._load_fresh()
        loaded = time.monotonic()
        data = self._training_data(battles, np.asarray(y))
        self.timing_ = {
            "load_s": loaded - started,
            "encode_s": time.monotonic() - loaded,
            "n_sequences": len(data.sequences),
        }
        setup = self._prepare(model, data)
        self.timing_["num_processes"] = accelerator.num_processes
        log.info(
            "fine-tune: process %d of %d, device %s, mixed precision %s, %d rows (swap-augmented), "
            "%d steps per process",
            accelerator.process_index,
            accelerator.num_processes,
            accelerator.device,
            accelerator.mixed_precision,
            len(data.sequences),
            setup.total_steps,
        )
        result = self._train(setup, deadline)
        self.steps_ = result.steps
        self.stopped_early_ = result.stopped_early
        self.step_seconds_ = result.step_seconds
        self.train_loss_ = result.train_loss
        self.model_ = setup.model
        return self

    def _load_fresh(self) -> torch.nn.Module:
        """Tokenizer and a fresh classifier (base weights, new head; LoRA for decoder LLMs)."""
        cfg = self.config
        self.tokenizer_ = load_tokenizer(cfg.require_model_path())
        return load_classifier(
            cfg.require_model_path(),
            lora=cfg.lora,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            load_in_bits=cfg.load_in_bits,
            gradient_checkpointing=cfg.gradient_checkpointing,
            pad_token_id=self.tokenizer_.pad_token_id,
        )

    def _training_data(self, battles: pd.DataFrame, y: np.ndarray) -> TrainingData:
        """Token ids and labels, each battle also as B-vs-A with the label swapped when augmenting."""
        sequences = self._encode(battles)
        labels = [int(v) for v in y]
        if self.config.swap_augment:
            sequences += self._encode(battles, swapped=True)
            labels += [int(v) for v in swap_labels(y)]
        return TrainingData(sequences, labels)

    def _prepare(self, model: torch.nn.Module, data: TrainingData) -> TrainingSetup:
        """Loader, optimiser and schedule, handed to accelerate (devices, precision, data parallelism)."""
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        accelerator = self._accelerator()
        pad_id = self._pad_id()
        rows = list(zip(data.sequences, data.labels))
        # a list is a map-style dataset (__getitem__ and __len__); torch's stubs only name Dataset
        loader = DataLoader(
            cast("Dataset[tuple[list[int], int]]", rows),
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
            collate_fn=lambda rows: pad_batch([r[0] for r in rows], pad_id, [r[1] for r in rows]),
        )
        steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
        steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
        if cfg.max_steps is not None:
            steps = min(steps, cfg.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
        # data-parallel: each process takes its own batch per step and accelerate's scheduler advances
        # num_processes times per step, so the epoch (and the schedule) ends after total/num_processes steps
        steps = math.ceil(steps / accelerator.num_processes)
        return TrainingSetup(model, optimizer, loader, scheduler, params, steps)

    def _train(self, setup: TrainingSetup, deadline: float | None) -> TrainingResult:
        """The optimiser loop: epochs over the loader until ``total_steps`` or the deadline."""
        accelerator = self._accelerator()
        model, optimizer, scheduler = setup.model, setup.optimizer, setup.scheduler
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        bar = tqdm(
            total=setup.total_steps,
            desc="fine-tune",
            unit="step",
            disable=not (self.progress and accelerator.is_local_main_process),
        )
        result = TrainingResult()
        last = time.perf_counter()
        while result.steps < setup.total_steps and not result.stopped_early:
            for batch in setup.loader:
                with accelerator.accumulate(model):
                    labels_t = batch.pop("labels")
                    logits = model(**batch).logits.float()
                    loss = loss_fn(logits, labels_t)  # 3-class cross-entropy on logits
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(setup.params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                result.losses.append(float(loss.detach()))
                if not accelerator.sync_gradients:
                    continue
                result.steps += 1
                now = time.perf_counter()
                result.step_seconds.append(now - last)
                last = now
                bar.update(1)
                bar.set_postfix(loss=f"{result.train_loss:.4f}")
                if result.steps >= setup.total_steps:
                    break
                if deadline is not None and self._deadline_passed(accelerator, deadline):
                    result.stopped_early = True
                    log.warning("fine-tune: time budget reached after %d/%d steps", result.steps, setup.total_steps)
                    break
        bar.close()
        return result

    @staticmethod
    def _deadline_passed(accelerator: Accelerator, deadline: float) -> bool:
        """All processes agree (a rank leaving the loop alone would hang the others in a collective)."""
        if accelerator.num_processes == 1:
            return time.monotonic() > deadline
        if time.monotonic() > deadline:
            accelerator.set_trigger()
        return accelerator.check_trigger()

    def seconds_per_step(self) -> float | None:
        """Measured optimiser-step time of the last ``fit``, the first two (warm-up) steps left out when possible."""
        steps = getattr(self, "step_seconds_", None) or []
        if len(steps) >= 4:
            steps = steps[2:]
        return float(np.mean(steps)) if steps else None

    @torch.inference_mode()
    def _predict_logits(self, sequences: list[list[int]]) -> np.ndarray:
        """Length-sorted, dynamically padded batches; rows split across processes and gathered.

        Runs under ``torch.inference_mode`` (no autograd bookkeeping, no version counters): nothing here needs
        tracked tensors afterwards, since the logits leave as numpy arrays and a model is never trained again
        after it has predicted (cross-fit: fit, OOF, test, save; bundles load models for prediction only)."""
        from accelerate.utils import gather_object

        accelerator = self._accelerator()
        if self.model_ is None:
            raise RuntimeError("fit first")
        model = self.model_
        model.eval()
        batches = length_sorted_batches(np.array([len(s) for s in sequences]), self.config.eval_batch_size)
        mine = batches[accelerator.process_index :: accelerator.num_processes]
        pad_id = self._pad_id()
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for idx in tqdm(
            mine, desc="predict", unit="batch", disable=not (self.progress and accelerator.is_local_main_process)
        ):
            batch = pad_batch([sequences[i] for i in idx], pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                logits = model(**batch).logits.float()
            results.append((idx, logits.cpu().numpy()))
        if accelerator.num_processes > 1:
            results = gather_object(results)
        out = np.zeros((len(sequences), N_CLASSES), dtype=np.float64)
        for idx, logits in results:
            out[idx] = logits
        return out

    def encode_for_prediction(self, battles: pd.DataFrame) -> EncodedBattles:
        """Token ids of both orders, once: fold models of one encoder share their inputs."""
        swapped = self._encode(battles, swapped=True) if self.config.swap_augment else None
        return EncodedBattles(self._encode(battles), swapped)

    def predict_proba(self, battles: pd.DataFrame, encoded: EncodedBattles | None = None) -> np.ndarray:
        """Softmax probabilities averaged over (A, B) and the swap of (B, A)."""
        if self.model_ is None:
            raise RuntimeError("fit first")
        from scipy.special import softmax

        encoded = encoded or self.encode_for_prediction(battles)
        direct = softmax(self._predict_logits(encoded.direct), axis=1)
        if encoded.swapped is None:
            return direct
        swapped = softmax(self._predict_logits(encoded.swapped), axis=1)
        return (direct + swap_proba(swapped)) / 2.0

    def save(self, directory: str | Path, *, with_tokenizer: bool = True) -> Path:
        """The fitted model as safetensors (LoRA: adapter + head only); main process only."""
        if self.model_ is None:
            raise RuntimeError("fit first")
        model = self._accelerator().unwrap_model(self.model_)
        tokenizer = self._tokenizer() if with_tokenizer else None
        return save_classifier(model, tokenizer, directory, self.config.require_model_path())

    def save_tokenizer(self, directory: str | Path) -> None:
        """The tokenizer alone: fold models of one encoder share one (``save(..., with_tokenizer=False)``)."""
        self._tokenizer().save_pretrained(str(directory))

    @classmethod
    def from_saved(
        cls,
        directory: str | Path,
        config: EncoderConfig,
        tokenizer: PreTrainedTokenizerBase | None = None,
        progress: bool = False,
    ) -> TransformerClassifier:
        """A classifier for prediction from what :meth:`save` wrote; ``config.model_path`` is the base
        (LoRA), ``config.load_in_bits`` / ``precision`` / ``eval_batch_size`` apply to inference."""
        clf = cls(config, progress=progress)
        clf.tokenizer_ = tokenizer if tokenizer is not None else load_tokenizer(directory)
        model = load_trained_classifier(
            directory,
            config.model_path,
            pad_token_id=clf.tokenizer_.pad_token_id,
            load_in_bits=config.load_in_bits,
        )
        if config.load_in_bits is None:  # bitsandbytes places quantised weights itself
            model = model.to(clf._accelerator().device)
        clf.model_ = model.eval()
        return clf

    def release(self) -> None:
        """Free the model's memory between folds."""
        self.model_ = None
        if self.accelerator_ is not None:
            self.accelerator_.free_memory()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
