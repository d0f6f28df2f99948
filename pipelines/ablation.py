"""Which feature groups pay, and what biases the stacker learned: an ablation report.

    python -m pipelines.ablation [--train T.csv --test S.csv] [--out DIR] [--params best_params.json]
    python -m pipelines.ablation --config run.json   # a RunConfig tree, plus {"ablation": {"top_features": 20}}

For every feature group (length, lexical, overlap, readability, formatting, and each extra
probability source on its own) the stacker is refitted without it (drop-one) and with it alone
(only-this), on the run's saved folds with the same seed, each scored by calibrated nested OOF
log loss. Differences to the full model are paired per fold (same rows, same seeds), so their
spread over folds says whether a group's effect is larger than fold-to-fold noise.

Also: LightGBM gain importance, reliability before/after calibration, and the two biases the
competition names: verbosity (length difference) and position (A vs B).
Writes ``DIR/ablation/ablation.{json,md,html}`` and PNGs; the JSON is a pure function of the
data, folds, seed and settings (no timings), so two runs give identical files.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cli import (
    add_data_args,
    add_dataclass_args,
    add_stacker_choice_args,
    apply_params_file,
    overrides_from_args,
    parse_run_command,
    run_config_from_args,
)
from pipelines.experiments.ablation import AblationConfig, run_ablation, run_by_source
from pipelines.runtime.command_setup import command_parser, setup_logging
from pipelines.runtime.errors import UsageError, arguments_checked


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.ablation", __doc__)
    add_data_args(p)
    add_stacker_choice_args(p)
    add_dataclass_args(p, AblationConfig)
    p.add_argument(
        "--by-source",
        action="store_true",
        help="instead: the leave-one-source-out report of every tie handling over --train (with a source "
        "column) and --extra-train, written to OUT/ablation/by_source (pipelines.experiments.loso_study)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_run_command(build_parser(), argv, "ablation")
    with arguments_checked():
        config = run_config_from_args(args)
        apply_params_file(config, args)
        sources = config.sources
    from pipelines.preflight import check_run

    with arguments_checked():
        ablation_config = AblationConfig(**overrides_from_args(args, AblationConfig))
    check_run(config)
    if args.by_source:
        given = [f for f, v in (("--tie-handling", args.tie_handling), ("--calibration", args.calibration)) if v]
        if given or args.source:  # the study would not use them: refused, never ignored
            flag = given[0] if given else "--source"
            raise UsageError(f"{flag}: --by-source compares every tie handling, uncalibrated, without --source files")
        print(f"wrote {run_by_source(config, sources)['md']}")
        return 0
    run_ablation(config, ablation_config, sources)
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
