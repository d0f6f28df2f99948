"""Fine-tune one transformer in the run's folds (the encoder stage of ``full_run``, runnable alone).

    python -m pipelines.train_encoder --run-dir DIR --train T.csv --test S.csv --config encoder.json
    torchrun --standalone --nproc_per_node 2 -m pipelines.train_encoder ...   # data-parallel

Reads ``DIR/folds.csv`` so its folds are the stacker's (``full_run`` hands its workers the rows and folds
themselves with ``--rows``); writes ``DIR/oof_<name>.parquet`` and, with
``--test``, ``DIR/test_<name>.parquet``; finished folds are checkpointed and skipped on a rerun. Without
``--test`` (as ``full_run`` launches it) the fold models score the test rows after the fit, and
``--test-rows`` tells the time plan how many.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.settings import EncoderConfig
from pipelines.data.battles import load_battles
from pipelines.runtime.command_setup import add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.errors import UsageError, arguments_checked
from pipelines.stages.encoder_launch import read_launch_rows, run_in_process

log = logging.getLogger("arena_pref")


def budget_seconds(hours: float | None, seconds: float | None) -> float | None:
    """The stage's budget in seconds from ``--time-budget-hours`` or the deprecated ``--seconds`` (not both)."""
    if hours is not None and seconds is not None:
        raise UsageError("give --time-budget-hours or --seconds (deprecated), not both")
    if seconds is not None:
        log.warning("--seconds is deprecated: give --time-budget-hours %g (hours, as full_run's)", seconds / 3600)
    flag, value = ("--seconds", seconds) if seconds is not None else ("--time-budget-hours", hours)
    if value is not None and not value >= 0:
        raise UsageError(f"{flag} {value:g}: must be 0 or more")
    return seconds if seconds is not None else None if hours is None else hours * 3600


def run_folds(folds_path: Path, train: pd.DataFrame) -> np.ndarray:
    """``--train``'s folds from the run's ``folds.csv``: every training id must have one."""
    if not folds_path.exists():
        raise UsageError(f"{folds_path} not found: run pipelines.full_run first (it writes the shared folds)")
    folds = pd.read_csv(folds_path, dtype={"id": str}).set_index("id")["fold"]
    missing = ~train["id"].astype(str).isin(folds.index)
    if missing.any():
        raise UsageError(
            f"{folds_path}: no fold for {int(missing.sum())} training id(s) (first {train['id'][missing].iloc[0]!r}):"
            " the run's training rows differ from --train (an --extra-train run launches its workers with --rows)"
        )
    return folds.loc[train["id"].astype(str)].to_numpy()


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = command_parser("pipelines.train_encoder", __doc__)
    p.add_argument("--run-dir", required=True, help="run directory holding folds.csv")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--train", help="training CSV; its folds are read from DIR/folds.csv")
    rows.add_argument(
        "--rows",
        help="the rows (with their folds) a run's encoder stage handed its workers (a parquet it wrote; not for "
        "hand use)",
    )
    p.add_argument("--test", help="test CSV scored inside the folds (omit: the fold models score it later)")
    p.add_argument(
        "--test-rows",
        type=int,
        default=0,
        help="without --test: rows the fold models will score after the fit (the time budget reserves their time)",
    )
    add_config_arg(
        p,
        "EncoderConfig as JSON (keys as its fields); this command's other options may sit in a 'train_encoder'"
        " section; flags override it",
    )
    p.add_argument("--model", help="local model folder (instead of --config)")
    p.add_argument(
        "--time-budget-hours",
        type=float,
        help="budget for this stage, in hours as full_run's (default: none); folds that would overrun are not started",
    )
    p.add_argument("--seconds", type=float, help="deprecated: the budget in seconds (use --time-budget-hours)")
    p.add_argument(
        "--save-models",
        choices=EncoderConfig.SAVE_MODELS_CHOICES,
        help="fold models kept for later prediction: all, lora (adapters + heads only) or none",
    )
    args = parse_command(p, argv, "train_encoder", EncoderConfig, tree_dests={"model", "save_models"})
    tree = dict(args.config_tree)
    if args.model:
        tree["model_path"] = args.model
    if args.save_models:
        tree["save_models"] = args.save_models
    if tree.get("model_path") is None:
        raise UsageError("give --model or a --config with model_path")
    with arguments_checked("encoder settings: "):
        config = EncoderConfig(**tree)
    seconds = budget_seconds(args.time_budget_hours, args.seconds)
    run_dir = Path(args.run_dir)
    if not (args.train or args.rows):
        raise UsageError("give --train (with the run's folds.csv) or --rows")
    if args.test and args.test_rows:
        p.error("give --test or --test-rows, not both")
    test = load_battles(args.test, labelled=False)[0] if args.test else None
    if args.rows:
        train, folds = read_launch_rows(Path(args.rows))
    else:
        train, _ = load_battles(args.train, labelled=True)
        folds = run_folds(run_dir / "folds.csv", train)
    run = run_in_process(config, train, folds, run_dir, seconds, test=test, test_rows=args.test_rows)
    log.info("encoder %s: %d/%d folds done", run.name, len(run.folds_done), run.folds_total)
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
