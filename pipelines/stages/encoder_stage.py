"""The encoder stage of ``full_run``: fine-tune each configured model in the run's folds.

One GPU or CPU: in this process. Several GPUs (Kaggle's 2x T4), or ``workers`` > 1: ``torchrun`` runs
the same code data-parallel in that many processes, on the rows and folds this stage hands them. A model
whose folds did not all finish in the time budget is left out of the stacker (a source must cover every
train row) and the run goes on without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from encoders.fold_models import MANIFEST
from encoders.settings import EncoderConfig
from pipelines.stages.encoder_launch import launch_data_parallel, run_in_process
from pipelines.stages.stacker_inputs import StackerInputs

log = logging.getLogger(__name__)


@dataclass
class EncoderStage:
    """``finished``: {name: oof_path} of every model whose folds all finished (the test rows are scored after the
    fit, by the fold models);
    ``plans``: {name: the cross-fit's plan (decisions, projected and actual seconds)};
    ``fold_models``: {name: folder for ``EncoderFoldModels.load``} of finished models whose fold models were kept."""

    finished: dict[str, Path] = field(default_factory=dict)
    plans: dict[str, dict] = field(default_factory=dict)
    fold_models: dict[str, Path] = field(default_factory=dict)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def worker_count(enc: EncoderConfig, gpus: int | None = None) -> int:
    """Processes that fine-tune ``enc``: its ``workers``, else one per GPU where there are several, else 1.

    A count that cannot run is refused before any work: more workers than GPUs on a GPU machine (two
    processes on one GPU would share its memory and gain nothing)."""
    gpus = gpu_count() if gpus is None else gpus
    if enc.workers is None:
        return gpus if gpus > 1 else 1
    if gpus and enc.workers > gpus:
        raise ValueError(f"encoder {enc.resolved_name}: workers {enc.workers}, but this machine has {gpus} GPU(s)")
    return enc.workers


def _read_plan(run_dir: Path, name: str) -> dict:
    path = run_dir / f"encoder_{name}" / "plan.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_encoders(
    inputs: StackerInputs,
    encoders: Sequence[EncoderConfig],
    run_dir: Path,
    *,
    seed: int,
    deadline: float | None = None,
    progress: bool = False,
    test_rows: int = 0,
) -> EncoderStage:
    """Fine-tune every configured model; a model that fails or runs out of time is left out, never the run.

    No test rows are scored here: ``test_rows`` rows will be scored after the fit by every fold model, and each
    encoder's time plan reserves that time within ``deadline``. Several workers (``worker_count``) are launched
    on exactly ``inputs``' rows and folds, like the in-process fit.
    """
    stage = EncoderStage()
    for enc in encoders:
        enc = replace(enc, seed=seed)
        name = enc.resolved_name
        seconds_left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        started = time.monotonic()
        plan: dict = {}
        try:
            workers = worker_count(enc)
            if workers > 1:
                launch_data_parallel(enc, inputs.train, inputs.folds, run_dir, workers, seconds_left, test_rows)
                plan = {**_read_plan(run_dir, name), "workers": workers}
            else:
                run = run_in_process(
                    enc, inputs.train, inputs.folds, run_dir, seconds_left, progress, test_rows=test_rows
                )
                plan = {**run.plan, "workers": 1}
        except Exception as exc:  # the features-only submission is already written: keep going without it
            log.exception("encoder %s failed; left out of the stacker", name)
            plan = {**_read_plan(run_dir, name), "error": f"{type(exc).__name__}: {exc}"}
        plan = {
            **plan,
            "seconds_left_given": None if seconds_left is None else round(seconds_left, 1),
            "wall_s": round(time.monotonic() - started, 1),
        }
        oof = run_dir / f"oof_{name}.parquet"
        # a file from an earlier complete run counts only if this run's folds were all done
        if oof.exists() and plan.get("complete", True) and "error" not in plan:
            stage.finished[name] = oof
            plan["finished"] = True
            if (run_dir / f"encoder_{name}" / MANIFEST).exists():
                stage.fold_models[name] = run_dir / f"encoder_{name}"
        else:
            plan["finished"] = False
            log.warning(
                "encoder %s did not finish all folds in the time budget: left out of the stacker "
                "(a rerun resumes from its checkpoints)",
                name,
            )
        stage.plans[name] = plan
    return stage
