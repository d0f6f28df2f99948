"""Leave-one-source-out report (the study is :mod:`pipelines.experiments.loso_study`).

    python -m pipelines.loso --data ../shared/data --out benchmarks/results/loso --fold-seeds 3
    python -m pipelines.loso --config loso.json       # {"loso": {"data": ..., "out": ..., "fold_seeds": 3}}
    python -m pipelines.loso --rerender benchmarks/results/loso

Writes ``loso.{json,md,html}`` and reliability PNGs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from features.groups import expand_groups
from pipelines.cli import FOLD_FEATURE_FLAGS, add_dataclass_args
from pipelines.experiments.loso_study import run_study
from pipelines.reports.loso_report import format_ms, rerender
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, parse_command, setup_logging
from pipelines.runtime.errors import UsageError
from pipelines.stages.config import FeatureConfig
from stacking.config import STUDY_PRESET
from stacking.tie_registry import option_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.loso", description=__doc__.split("\n\n")[0])
    add_config_arg(p, SECTION_HELP.format("loso"))
    src = p.add_mutually_exclusive_group()  # one of the two, from the flags or the file (checked in main)
    src.add_argument("--data", type=Path, help="shared data folder (converted with pipelines.build_shared rules)")
    src.add_argument("--combined", type=Path, help="a train.csv-schema file with a source column")
    p.add_argument("--out", type=Path, required=True, help="folder for loso.{json,md,html} and PNGs")
    options = ",".join(option_names())
    p.add_argument("--options", default=options, help=f"comma-separated subset of {options}")
    p.add_argument("--fold-seeds", type=int, default=3)
    p.add_argument("--holdouts", default="", help="comma-separated sources to hold out (default: all)")
    p.add_argument(
        "--oof-options", default=None, help="options that also get within-source OOF (default: all; '' none)"
    )
    p.add_argument("--jobs", type=int, default=1, help="(option, seed) tasks run in parallel")
    p.add_argument("--folds", type=int, default=STUDY_PRESET.n_folds, help="grouped CV folds")
    p.add_argument("--cache-dir", type=Path, default=Path("outputs/feature_cache"), help="feature cache")
    p.add_argument("--learning-rate", type=float, default=STUDY_PRESET.learning_rate)  # defaults: stacking.config
    p.add_argument("--num-boost-round", type=int, default=STUDY_PRESET.num_boost_round)
    p.add_argument("--early-stopping-rounds", type=int, default=STUDY_PRESET.early_stopping_rounds)
    p.add_argument("--num-threads", type=int, default=STUDY_PRESET.num_threads)
    p.add_argument("--tieless-weight", type=float, default=STUDY_PRESET.tieless_weight)
    p.add_argument("--n-jobs", type=int, default=1, help="feature extraction processes")
    p.add_argument(
        "--groups",
        default="default",
        help="comma-separated feature groups, 'default' for the default ones (e.g. default,sentiment)",
    )
    add_dataclass_args(p.add_argument_group("fold features"), FeatureConfig, only=FOLD_FEATURE_FLAGS)
    return p


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--rerender"]:
        print(f"wrote {rerender(Path(argv[1]))['md']}")
        return 0
    args = parse_command(build_parser(), argv, "loso")
    setup_logging()
    if (args.data is None) == (args.combined is None):
        raise UsageError("give one of --data and --combined")
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in option_names()]
    if unknown:
        raise UsageError(f"--options: unknown option(s) {unknown}; choose from {option_names()}")
    groups = expand_groups([g.strip() for g in args.groups.split(",") if g.strip()])
    settings = {
        "params": {"learning_rate": args.learning_rate, "num_threads": args.num_threads},
        "num_boost_round": args.num_boost_round,
        "early_stopping_rounds": args.early_stopping_rounds,
        "tieless_weight": args.tieless_weight,
    }
    summary, paths = run_study(
        args.data,
        args.combined,
        args.out,
        options,
        groups,
        settings,
        fold_seeds=args.fold_seeds,
        holdouts=[h for h in args.holdouts.split(",") if h] or None,
        n_folds=args.folds,
        oof_options=options if args.oof_options is None else [o for o in args.oof_options.split(",") if o],
        jobs=args.jobs,
        feature_jobs=args.n_jobs,
        cache_dir=Path(args.cache_dir),
        command="python -m pipelines.loso " + " ".join(argv),
        fold_features=FeatureConfig(
            groups=groups, **{k: getattr(args, k) for k in FOLD_FEATURE_FLAGS if getattr(args, k) is not None}
        ),
    )
    for option, macro in summary["macro"].items():
        v = macro["value"]
        print(f"{option:16s} LOSO {format_ms(v['log_loss'])}  tie-row {format_ms(v['tie_loss'], 3)}")
    print(f"wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
