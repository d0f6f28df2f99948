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

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from arena_schema import swap_labels, swap_proba
from encoders.inputs import BattleEncoder, length_sorted_batches
from encoders.model import load_classifier, load_tokenizer
from encoders.settings import EncoderConfig

log = logging.getLogger(__name__)


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision value for this machine."""
    if precision != "auto":
        return {"fp32": "no"}.get(precision, precision)
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16"


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


class TransformerClassifier:
    """One fine-tuned model. ``deadline`` (time.monotonic seconds) ends training early, gracefully."""

    def __init__(self, config: EncoderConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.model_ = None
        self.tokenizer_ = None
        self.accelerator_ = None
        self.stopped_early_ = False
        self.steps_ = 0
        self.timing_: dict = {}  # load_s, encode_s, n_sequences, num_processes of the last fit

    def _accelerator(self):
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

    def _encoder(self) -> BattleEncoder:
        return BattleEncoder(self.tokenizer_, self.config.max_length, self.config.prompt_share)

    def _encode(self, battles: pd.DataFrame, swapped: bool = False) -> list[list[int]]:
        a, b = ("b_turns", "a_turns") if swapped else ("a_turns", "b_turns")
        return self._encoder().encode_many(battles["prompt_turns"], battles[a], battles[b])

    def fit(self, battles: pd.DataFrame, y: np.ndarray, deadline: float | None = None) -> TransformerClassifier:
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        torch.manual_seed(cfg.seed)
        accelerator = self._accelerator()
        started = time.monotonic()
        self.tokenizer_ = load_tokenizer(cfg.model_path)
        model = load_classifier(
            cfg.model_path,
            lora=cfg.lora,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            load_in_bits=cfg.load_in_bits,
            gradient_checkpointing=cfg.gradient_checkpointing,
            pad_token_id=self.tokenizer_.pad_token_id,
        )
        loaded = time.monotonic()
        y = np.asarray(y)
        sequences = self._encode(battles)
        labels = list(y)
        if cfg.swap_augment:
            sequences += self._encode(battles, swapped=True)
            labels += list(swap_labels(y))
        self.timing_ = {
            "load_s": loaded - started,
            "encode_s": time.monotonic() - loaded,
            "n_sequences": len(sequences),
        }
        pad_id = self.tokenizer_.pad_token_id
        data = list(zip(sequences, labels))
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed),
            collate_fn=lambda rows: pad_batch([r[0] for r in rows], pad_id, [int(r[1]) for r in rows]),
        )
        steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
        total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
        # data-parallel: each process takes its own batch per step and accelerate's scheduler advances
        # num_processes times per step, so the epoch (and the schedule) ends after total/num_processes steps
        total_steps = math.ceil(total_steps / accelerator.num_processes)
        self.timing_["num_processes"] = accelerator.num_processes
        log.info(
            "fine-tune: process %d of %d, device %s, mixed precision %s, %d rows (swap-augmented), "
            "%d steps per process",
            accelerator.process_index,
            accelerator.num_processes,
            accelerator.device,
            accelerator.mixed_precision,
            len(data),
            total_steps,
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        bar = tqdm(
            total=total_steps,
            desc="fine-tune",
            unit="step",
            disable=not (self.progress and accelerator.is_local_main_process),
        )
        step, running = 0, []
        self.step_seconds_: list[float] = []  # wall time per optimiser step, for throughput projections
        last = time.perf_counter()
        while step < total_steps:
            for batch in loader:
                with accelerator.accumulate(model):
                    labels_t = batch.pop("labels")
                    logits = model(**batch).logits.float()
                    loss = loss_fn(logits, labels_t)  # 3-class cross-entropy on logits
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                running.append(float(loss.detach()))
                if accelerator.sync_gradients:
                    step += 1
                    now = time.perf_counter()
                    self.step_seconds_.append(now - last)
                    last = now
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}")
                    if step >= total_steps:
                        break
                    if deadline is not None and self._deadline_passed(accelerator, deadline):
                        self.stopped_early_ = True
                        log.warning("fine-tune: time budget reached after %d/%d steps", step, total_steps)
                        break
            if self.stopped_early_:
                break
        bar.close()
        self.steps_ = step
        self.model_ = model
        self.train_loss_ = float(np.mean(running[-50:])) if running else float("nan")
        return self

    @staticmethod
    def _deadline_passed(accelerator, deadline: float) -> bool:
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

    @torch.no_grad()
    def _predict_logits(self, sequences: list[list[int]]) -> np.ndarray:
        """Length-sorted, dynamically padded batches; rows split across processes and gathered."""
        from accelerate.utils import gather_object

        accelerator = self._accelerator()
        model = self.model_
        model.eval()
        batches = length_sorted_batches(np.array([len(s) for s in sequences]), self.config.eval_batch_size)
        mine = batches[accelerator.process_index :: accelerator.num_processes]
        pad_id = self.tokenizer_.pad_token_id
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
        out = np.zeros((len(sequences), 3), dtype=np.float64)
        for idx, logits in results:
            out[idx] = logits
        return out

    def predict_proba(self, battles: pd.DataFrame) -> np.ndarray:
        """Softmax probabilities averaged over (A, B) and the swap of (B, A)."""
        if self.model_ is None:
            raise RuntimeError("fit first")
        from scipy.special import softmax

        direct = softmax(self._predict_logits(self._encode(battles)), axis=1)
        if not self.config.swap_augment:
            return direct
        swapped = softmax(self._predict_logits(self._encode(battles, swapped=True)), axis=1)
        return (direct + swap_proba(swapped)) / 2.0

    def release(self) -> None:
        """Free the model's memory between folds."""
        self.model_ = None
        if self.accelerator_ is not None:
            self.accelerator_.free_memory()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
