"""The data arguments every entry point shares (full_run, tune, ablation), and the RunConfig they make."""

from __future__ import annotations

import argparse

from pipelines.config import RunConfig
from pipelines.paths import DataPaths, resolve_paths


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", help="train.csv (Kaggle schema); default: Kaggle input or the bundled sample")
    p.add_argument("--test", help="test.csv (Kaggle schema)")
    p.add_argument("--out", help="run directory (default outputs/run; /kaggle/working/arena_pref_run on Kaggle)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--groups", help="comma-separated feature groups (default: all)")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=OOF,TEST",
        help="extra probability source: OOF file for train and prediction file for test",
    )
    p.add_argument("--n-jobs", type=int, default=2, help="feature extraction processes")
    p.add_argument("--no-progress", action="store_true")


def run_config_from_data_args(args: argparse.Namespace) -> tuple[RunConfig, DataPaths]:
    """A RunConfig from :func:`add_data_args`'s arguments, and the resolved paths."""
    paths = resolve_paths(args.train, args.test, args.out)
    config = RunConfig(
        train_path=str(paths.train),
        test_path=str(paths.test),
        out_dir=str(paths.out_dir),
        n_folds=args.folds,
        seed=args.seed,
        progress=not args.no_progress,
    )
    config.features.n_jobs = args.n_jobs
    if args.groups:
        config.features.groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    for spec in args.source:
        name, _, files = spec.partition("=")
        if not files or "," not in files:
            raise SystemExit(f"--source expects NAME=OOF,TEST, got {spec!r}")
        config.extra_sources[name] = files
    return config, paths
