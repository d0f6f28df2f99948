"""Start one encoder's cross-fit: in this process, or data-parallel in several worker processes (``torchrun``).

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

import numpy as np
import pandas as pd

from encoders.cross_fit import EncoderRun, cross_fit_encoder
from encoders.settings import EncoderConfig

log = logging.getLogger("arena_pref")
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the workers import the project from here, whatever the cwd
LAUNCH_GRACE_S = 60  # past its budget, a launched run is ended (the caller reserved this much and more)


def run_in_process(
    config: EncoderConfig,
    train: pd.DataFrame,
    folds,
    run_dir: Path,
    seconds_left: float | None,
    progress: bool = True,
    *,
    test: pd.DataFrame | None = None,
    test_rows: int = 0,
) -> EncoderRun:
    """``test`` (``pipelines.train_encoder --test`` only) is scored inside the folds; without it (a run) the test
    rows, ``test_rows`` of them, are scored after the fit and the plan reserves their time."""
    import torch

    from pipelines.runtime.resources import torch_threads

    torch.set_num_threads(torch_threads())  # the cores this process may use, not the host's
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    return cross_fit_encoder(
        config, train, train["label"].to_numpy(), folds, test, run_dir, deadline, progress, test_rows=test_rows
    )


ROW_COLUMNS = ("id", "prompt_turns", "a_turns", "b_turns", "label", "fold")


def write_launch_rows(train: pd.DataFrame, folds, path: Path) -> Path:
    """The rows the launched workers fine-tune on, exactly the stacker's (ids, turns, labels, folds, and the
    sample weights when the rows carry them), in one parquet file of the run's work folder.

    Why a file the stage writes, not the user's CSV: a run's training rows are the primary file plus every
    ``--extra-train`` set, or a frame ``fit`` was given; only the stage holds them all.
    """
    frame = pd.DataFrame(
        {
            "id": train["id"].astype(str).to_numpy(),
            "prompt_turns": train["prompt_turns"].to_numpy(),
            "a_turns": train["a_turns"].to_numpy(),
            "b_turns": train["b_turns"].to_numpy(),
            "label": train["label"].to_numpy(dtype=np.int64),
            "fold": np.asarray(folds, dtype=np.int64),
        }
    )
    if "weight" in train:
        frame["weight"] = train["weight"].to_numpy(dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    return path


def read_launch_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(train rows, folds) as :func:`write_launch_rows` wrote them; turn lists come back as Python lists."""
    frame = pd.read_parquet(path)
    missing = [c for c in ROW_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"{path}: not an encoder rows file (no {missing})")
    for col in ("prompt_turns", "a_turns", "b_turns"):
        frame[col] = [[str(t) for t in turns] for turns in frame[col]]
    return frame.drop(columns="fold"), frame["fold"].to_numpy(dtype=np.int64)


def launch_command(
    rows: Path, config_path: Path, run_dir: Path, workers: int, seconds_left: float | None, test_rows: int
):
    """``torchrun`` (the launcher ``accelerate launch --multi_gpu`` itself wraps) over ``pipelines.train_encoder``:
    ``--standalone`` picks a free port, so two runs on one machine do not collide."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(workers),
        "-m",
        "pipelines.train_encoder",
        "--run-dir",
        str(run_dir),
        "--rows",
        str(rows),
        "--test-rows",
        str(test_rows),
        "--config",
        str(config_path),
    ]
    if seconds_left is not None:
        cmd += ["--time-budget-hours", repr(int(seconds_left) / 3600)]
    return cmd


def launch_data_parallel(
    config: EncoderConfig,
    train: pd.DataFrame,
    folds,
    run_dir: Path,
    workers: int,
    seconds_left: float | None,
    test_rows: int = 0,
) -> None:
    """``workers`` processes fine-tune each fold data-parallel (DDP through accelerate: NCCL on GPUs, gloo on
    CPUs) on exactly ``train`` and ``folds``, handed over in a parquet file. No test file: the test rows are scored
    after the fit; ``--test-rows`` tells the plan how many to reserve time for."""
    work = run_dir / f"encoder_{config.resolved_name}"
    rows = write_launch_rows(train, folds, work / "launch_rows.parquet")
    config_path = work / "launch_config.json"
    config_path.write_text(json.dumps(asdict(config), indent=2))
    cmd = launch_command(rows, config_path, run_dir, workers, seconds_left, test_rows)
    log.info("launching %d workers: %s", workers, " ".join(cmd))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    # its own process group, so a run that hangs past the budget is ended with all its workers
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
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
