"""Fine-tune one transformer in the run's folds (the encoder stage of ``full_run``, runnable alone).

    python -m pipelines.train_encoder --run DIR --train T.csv --test S.csv --config encoder.json
    accelerate launch --multi_gpu --num_processes 2 -m pipelines.train_encoder ...   # data-parallel

Reads ``DIR/folds.csv`` so its folds are the stacker's; writes ``DIR/oof_<name>.parquet`` and
``DIR/test_<name>.parquet``; finished folds are checkpointed and skipped on a rerun.
"""

from __future__ import annotations

import argparse
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
from pipelines.data import load_battles

log = logging.getLogger("arena_pref")
LAUNCH_GRACE_S = 60  # past its budget, a launched run is ended (the caller reserved this much and more)


def run_in_process(
    config: EncoderConfig,
    train: pd.DataFrame,
    test: pd.DataFrame,
    folds,
    run_dir: Path,
    seconds_left: float | None,
    progress: bool = True,
) -> EncoderRun:
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    return cross_fit_encoder(config, train, train["label"].to_numpy(), folds, test, run_dir, deadline, progress)


def launch_data_parallel(
    config: EncoderConfig, train_path: str, test_path: str, run_dir: Path, n_gpus: int, seconds_left: float | None
) -> None:
    """Several GPUs: the same CLI under ``accelerate launch`` (accelerate does the process management)."""
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
        "--test",
        test_path,
        "--config",
        str(config_path),
    ]
    if seconds_left is not None:
        cmd += ["--seconds", str(int(seconds_left))]
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(
        prog="python -m pipelines.train_encoder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory holding folds.csv")
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--config", help="EncoderConfig as JSON")
    p.add_argument("--model", help="local model folder (instead of --config)")
    p.add_argument("--seconds", type=float, help="time budget for this stage")
    args = p.parse_args(argv)
    if args.config:
        config = EncoderConfig(**json.loads(Path(args.config).read_text()))
    elif args.model:
        config = EncoderConfig(model_path=args.model)
    else:
        p.error("give --config or --model")
    run_dir = Path(args.run)
    train, _ = load_battles(args.train, labelled=True)
    test, _ = load_battles(args.test, labelled=False)
    folds_path = run_dir / "folds.csv"
    if not folds_path.exists():
        p.error(f"{folds_path} not found: run pipelines.full_run first (it writes the shared folds)")
    folds = pd.read_csv(folds_path, dtype={"id": str}).set_index("id").loc[train["id"], "fold"].to_numpy()
    run = run_in_process(config, train, test, folds, run_dir, args.seconds)
    log.info("encoder %s: %d/%d folds done", run.name, len(run.folds_done), run.folds_total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
