"""Train on train.csv, predict test.csv, write a calibrated submission.csv and a report.

python -m pipelines.full_run                       # Kaggle data if present, else the bundled sample
python -m pipelines.full_run --train T.csv --test S.csv --out DIR [--encoder MODEL_DIR] [--params best.json]
python -m pipelines.full_run --config run.json [--seed 7]   # a RunConfig tree (or DIR/report.json); flags override it
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from encoders.settings import EncoderConfig
from pipelines.cli import (
    ENCODER_FLAG_PREFIX,
    add_data_args,
    add_dataclass_args,
    add_prior_guard_args,
    add_stacker_choice_args,
    add_test_calibration_arg,
    apply_params_file,
    overrides_from_args,
    parse_run_command,
    run_config_from_data_args,
)
from pipelines.config.run_config import RunConfig
from pipelines.model.run import NewSourceCalibrationError, run
from pipelines.runtime.command_setup import command_parser, setup_logging
from pipelines.runtime.errors import PreflightError, arguments_checked

__all__ = ["build_parser", "config_from_args", "main", "run"]

KAGGLE_TIME_BUDGET_HOURS = 8.5
ENCODER_PREFIX = ENCODER_FLAG_PREFIX


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.full_run", __doc__)
    add_data_args(p)
    p.add_argument(
        "--submission", help="submission path (default <out>/submission.csv; /kaggle/working/submission.csv)"
    )
    add_stacker_choice_args(p)
    add_prior_guard_args(p)
    add_test_calibration_arg(p)
    p.add_argument(
        "--encoder",
        action="append",
        metavar="MODEL_DIR",
        help="fine-tune this local Hugging Face model in the same folds (repeatable)",
    )
    group = p.add_argument_group("encoders (apply to every --encoder)")
    add_dataclass_args(group, EncoderConfig, ENCODER_PREFIX)
    group.add_argument(
        "--save-encoders",
        choices=EncoderConfig.SAVE_MODELS_CHOICES,
        help="fold models kept for the model bundle: all (default), lora (adapters + heads only) or none "
        "(the bundle then predicts new battles with the features-only stacker)",
    )
    p.add_argument(
        "--test-labels", help="labels for test (sample_submission schema): scored after prediction, for evaluation only"
    )
    p.add_argument(
        "--time-budget-hours",
        type=float,
        help="budget for the whole run (default: none; 8.5 on Kaggle): the features-only submission is "
        "written first; encoders are planned against the rest (shorter max_length, fewer folds "
        "scoring test, or left out) and replace it only when better",
    )
    return p


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    config, paths = run_config_from_data_args(args)
    if args.time_budget_hours is not None:
        config.time_budget_hours = args.time_budget_hours
    elif config.time_budget_hours is None and paths.on_kaggle:
        config.time_budget_hours = KAGGLE_TIME_BUDGET_HOURS
    apply_params_file(config, args)
    encoder_settings = overrides_from_args(args, EncoderConfig, ENCODER_PREFIX)
    if args.save_encoders is not None:
        encoder_settings["save_models"] = args.save_encoders
    config.encoders += [  # --encoder adds to the file's encoders; the encoder flags apply to the added ones
        dataclasses.replace(EncoderConfig(model_path=model_dir), **encoder_settings) for model_dir in args.encoder or ()
    ]
    if args.submission:
        config.submission_path = args.submission
    submission = Path(config.submission_path) if config.submission_path else paths.submission
    return config, submission


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_run_command(build_parser(), argv, "full_run")
    with arguments_checked():
        config, submission = config_from_args(args)
    from pipelines.preflight import check_run, check_savable
    from pipelines.runtime.run_dir import hold_run_dir

    check_run(config, submission=submission, test_labels=args.test_labels)  # before any feature is computed
    check_savable(config.stacker.tie_handling)  # the run saves its model
    with hold_run_dir(config.out):  # one run at a time in --out; a second one stops with one line
        try:
            run(config, submission, Path(args.test_labels) if args.test_labels else None)
        except NewSourceCalibrationError as exc:  # checked on the training rows, before the fit
            raise PreflightError(f"--test-calibration new-source: {exc.reason}") from None
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
