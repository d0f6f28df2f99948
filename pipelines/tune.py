"""Tune the stacker's LightGBM parameters and calibration with Optuna; write best_params.json.

    python -m pipelines.tune [--train T.csv --test S.csv] [--out DIR] --n-trials 30 [--timeout 900]
    python -m pipelines.full_run --params DIR/best_params.json      # use the result
    python -m pipelines.tune --config run.json   # a RunConfig tree, plus {"tune": {"n_trials": 50, ...}}

Each trial is scored by the calibrated, nested out-of-fold log loss on the run's saved folds
(``DIR/folds.csv``), the number ``full_run`` reports. TPE is seeded; a MedianPruner stops a
trial whose running loss after a fold is worse than the median of earlier trials at that fold.

The study lives in ``sqlite:///DIR/optuna.db`` (name ``--study``, default "stacker"): run the
command again to add trials to it. ``--storage postgresql://user:pass@host/db`` (any Optuna RDB
URL) lets several machines work on one study at once; give each worker its own ``--sampler-seed``.

``--out`` is held as ``full_run`` holds it (one command at a time). Ctrl-C stops at the end of the
current fold (twice: at once): the trials finished so far are written up, the study resumes on the
next run, exit code 130.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.cli import (
    add_data_args,
    add_dataclass_args,
    overrides_from_args,
    parse_run_command,
    run_config_from_args,
)
from pipelines.experiments.tune import TuneConfig, default_storage, tune
from pipelines.runtime.command_setup import command_parser, setup_logging
from pipelines.runtime.errors import arguments_checked


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.tune", __doc__)
    add_data_args(p)
    add_dataclass_args(p, TuneConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_run_command(build_parser(), argv, "tune")
    with arguments_checked():
        config = run_config_from_args(args)
        sources = config.sources
    from pipelines.preflight import check_run, check_seed

    with arguments_checked():
        tune_config = TuneConfig(**overrides_from_args(args, TuneConfig))
    if tune_config.sampler_seed is not None:
        check_seed(tune_config.sampler_seed, "--sampler-seed")
    check_run(config, storage=tune_config.storage or default_storage(config.out))
    from pipelines.runtime.run_dir import hold_run_dir

    try:
        with hold_run_dir(config.out):  # one command at a time in --out, as full_run
            interrupted = tune(config, tune_config, sources)["interrupted"]
    except KeyboardInterrupt:  # before the study had a result to write (features, baseline)
        logging.getLogger("arena_pref.tune").warning(
            "interrupted: the study keeps the trials finished so far; run again to resume"
        )
        return INTERRUPTED_EXIT
    return INTERRUPTED_EXIT if interrupted else 0


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
