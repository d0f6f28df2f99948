"""The encoder stage of ``full_run``: fine-tune each configured model in the run's folds.

One GPU or CPU: in this process. Several GPUs (Kaggle's 2x T4): ``accelerate launch`` runs the
same code data-parallel. A model whose folds did not all finish in the time budget is left
out of the stacker (a source must cover every train row) and the run goes on without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from encoders.fold_models import MANIFEST
from encoders.settings import EncoderConfig
from pipelines.stages.encoder_launch import launch_data_parallel, run_in_process
from pipelines.stages.stacker_inputs import StackerInputs

log = logging.getLogger(__name__)


@dataclass
class EncoderStage:
    """``finished``: {name: (oof_path, None)} of every model whose folds all finished (the test rows are scored
    after the fit, by the fold models);
    ``plans``: {name: the cross-fit's plan (decisions, projected and actual seconds)};
    ``fold_models``: {name: folder for ``EncoderFoldModels.load``} of finished models whose fold models were kept."""

    finished: dict[str, tuple[Path, Path | None]] = field(default_factory=dict)
    plans: dict[str, dict] = field(default_factory=dict)
    fold_models: dict[str, Path] = field(default_factory=dict)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _read_plan(run_dir: Path, name: str) -> dict:
    path = run_dir / f"encoder_{name}" / "plan.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_encoders(
    inputs: StackerInputs,
    encoders: Sequence[EncoderConfig],
    run_dir: Path,
    *,
    seed: int,
    train_path: Callable[[], str],
    deadline: float | None = None,
    progress: bool = False,
    test_rows: int = 0,
) -> EncoderStage:
    """Fine-tune every configured model; a model that fails or runs out of time is left out, never the run.

    No test rows are scored here: ``test_rows`` rows will be scored after the fit by every fold model, and each
    encoder's time plan reserves that time within ``deadline``. ``train_path()`` gives the training CSV, only
    needed (and only called) for a data-parallel launch.
    """
    stage = EncoderStage()
    for enc in encoders:
        enc = replace(enc, seed=seed)
        name = enc.resolved_name
        seconds_left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        started = time.monotonic()
        n_gpus = gpu_count()
        plan: dict = {}
        try:
            if n_gpus > 1:
                launch_data_parallel(enc, train_path(), run_dir, n_gpus, seconds_left, test_rows)
                plan = _read_plan(run_dir, name)
            else:
                run = run_in_process(
                    enc, inputs.train, None, inputs.folds, run_dir, seconds_left, progress, test_rows=test_rows
                )
                plan = run.plan
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
            stage.finished[name] = (oof, None)
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
