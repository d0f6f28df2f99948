"""The encoder stage of ``full_run``: fine-tune each configured model in the run's folds.

One GPU or CPU: in this process. Several GPUs (Kaggle's 2x T4): ``accelerate launch`` runs the
same code data-parallel. A model whose folds did not all finish in the time budget is left
out of the stacker (a source must cover every train row) and the run goes on without it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipelines.config import RunConfig
from pipelines.stacker_inputs import StackerInputs
from pipelines.train_encoder import launch_data_parallel, run_in_process

log = logging.getLogger(__name__)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def run_encoders(inputs: StackerInputs, config: RunConfig, deadline: float | None = None) -> dict[str, tuple[Path, Path]]:
    """Returns ``{name: (oof_path, test_path)}`` for every model whose folds all finished."""
    finished: dict[str, tuple[Path, Path]] = {}
    run_dir = config.out
    for enc in config.encoders:
        enc.seed = config.seed
        name = enc.resolved_name
        seconds_left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        n_gpus = gpu_count()
        if n_gpus > 1:
            launch_data_parallel(enc, config.train_path, config.test_path, run_dir, n_gpus, seconds_left)
        else:
            run_in_process(enc, inputs.train, inputs.test, inputs.folds, run_dir, seconds_left, config.progress)
        oof, test = run_dir / f"oof_{name}.parquet", run_dir / f"test_{name}.parquet"
        if oof.exists() and test.exists():
            finished[name] = (oof, test)
        else:
            log.warning("encoder %s did not finish all folds in the time budget: left out of the stacker "
                        "(a rerun resumes from its checkpoints)", name)
    return finished
