"""Start one encoder's cross-fit: in this process, or data-parallel on several GPUs under ``accelerate launch``.

Kept apart from the command ``pipelines.train_encoder`` so the stage (``pipelines.stages.encoder_stage``) does not
import a CLI module; the launched processes run that command.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from encoders.cross_fit import EncoderRun, cross_fit_encoder
from encoders.settings import EncoderConfig

log = logging.getLogger("arena_pref")
LAUNCH_GRACE_S = 60  # past its budget, a launched run is ended (the caller reserved this much and more)


def run_in_process(
    config: EncoderConfig,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    folds,
    run_dir: Path,
    seconds_left: float | None,
    progress: bool = True,
    *,
    test_rows: int = 0,
) -> EncoderRun:
    """``test`` None: the test rows (``test_rows`` of them) are scored after the fit; the plan reserves their time."""
    import torch

    from pipelines.runtime.resources import torch_threads

    torch.set_num_threads(torch_threads())  # the cores this process may use, not the host's
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    return cross_fit_encoder(
        config, train, train["label"].to_numpy(), folds, test, run_dir, deadline, progress, test_rows=test_rows
    )


def launch_data_parallel(
    config: EncoderConfig, train_path: str, run_dir: Path, n_gpus: int, seconds_left: float | None, test_rows: int = 0
) -> None:
    """Several GPUs: the same CLI under ``accelerate launch`` (accelerate does the process management). No test
    file: the test rows are scored after the fit; ``--test-rows`` tells the plan how many to reserve time for."""
    config_path = run_dir / f"encoder_{config.resolved_name}.json"
    config_path.write_text(json.dumps(asdict(config), indent=2))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(n_gpus),
        "-m",
        "pipelines.train_encoder",
        "--run-dir",
        str(run_dir),
        "--train",
        train_path,
        "--test-rows",
        str(test_rows),
        "--config",
        str(config_path),
    ]
    if seconds_left is not None:
        cmd += ["--time-budget-hours", repr(int(seconds_left) / 3600)]
    log.info("launching: %s", " ".join(cmd))
    # its own process group, so a run that hangs past the budget is ended with all its workers
    proc = subprocess.Popen(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, start_new_session=True)
    timeout = None if seconds_left is None else seconds_left + LAUNCH_GRACE_S
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("data-parallel encoder run still going %.0fs past its budget: ending it", LAUNCH_GRACE_S)
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        raise
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)
