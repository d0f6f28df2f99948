"""Command-line arguments: a generic builder from dataclass fields, and the arguments the
entry points share (data: full_run, tune, ablation; stacker settings).

A flag's help is written once, next to its field (``field(metadata={"help": ...})``); every flag
defaults to None so that only the flags given override a config (``overrides_from_args``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from features.groups import expand_groups
from pipelines.data.training_sets import TrainingSource, TrainingSourcesConfig
from pipelines.runtime.errors import UsageError
from pipelines.runtime.paths import DataPaths, resolve_paths
from pipelines.runtime.resources import feature_workers, lightgbm_threads
from pipelines.stages.config import FeatureConfig, RunConfig, load_params_file
from pipelines.stages.new_source_stage import CALIBRATION_CHOICES
from stacking.config import StackerConfig

FOLD_FEATURE_FLAGS = ("tfidf", "embedder", "embedder_max_length")  # off by default: benchmarks/transformer_gain.py
STACKER_FLAGS = ("num_boost_round", "early_stopping_rounds", "num_threads", "tie_handling")  # every command


def _flag_type(annotation: Any) -> tuple[Any, tuple | None]:
    """(scalar type, choices) of a field annotation such as ``int | None`` or ``Literal["a", "b"]``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), tuple(args)
    if annotation in (int, float, str, bool):
        return annotation, None
    raise TypeError(f"no command-line flag for a field of type {annotation!r}")


def _cli_fields(cls: type, only: Iterable[str] | None) -> list[dataclasses.Field]:
    wanted = None if only is None else list(only)
    chosen = [
        f
        for f in dataclasses.fields(cls)
        if f.metadata.get("cli", True) and (wanted is None or f.name in wanted) and not f.name.isupper()
    ]
    if wanted is not None and len(chosen) != len(wanted):
        raise ValueError(f"{cls.__name__} has no flag field(s) {sorted(set(wanted) - {f.name for f in chosen})}")
    return chosen


def add_dataclass_args(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    prefix: str = "",
    only: Iterable[str] | None = None,
) -> None:
    """One ``--<prefix><field-name>`` flag per field of dataclass ``cls`` (``only``: these fields)."""
    hints = typing.get_type_hints(cls)
    for f in _cli_fields(cls, only):
        kind, choices = _flag_type(hints[f.name])
        choices = f.metadata["choices"]() if "choices" in f.metadata else choices  # e.g. a registry's names
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default {default})".strip()
        dest = (prefix + f.name).replace("-", "_")
        if kind is bool:
            p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            p.add_argument(flag, dest=dest, type=kind, choices=choices, default=None, help=help_text)


def overrides_from_args(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` whose flags (from :func:`add_dataclass_args`) were given."""
    out = {}
    for f in _cli_fields(cls, None):
        value = getattr(args, (prefix + f.name).replace("-", "_"), None)
        if value is not None:
            out[f.name] = value
    return out


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The data arguments every entry point takes, plus quick-look stacker settings."""
    p.add_argument("--train", help="train.csv (Kaggle schema); default: Kaggle input or the bundled sample")
    p.add_argument("--test", help="test.csv (Kaggle schema)")
    p.add_argument("--out", help="run directory (default outputs/run; /kaggle/working/arena_pref_run on Kaggle)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--groups",
        help="comma-separated feature groups; 'default' stands for the default ones, so "
        "'default,sentiment,spelling' adds the opt-in groups (default: default)",
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=OOF,TEST",
        help="extra probability source: OOF file for train and prediction file for test",
    )
    p.add_argument("--n-jobs", type=int, help="feature extraction processes (default: the cores this process may use)")
    p.add_argument("--no-progress", action="store_true")
    sources = p.add_argument_group("training sources")
    sources.add_argument(
        "--extra-train",
        action="append",
        default=[],
        type=_training_source,
        metavar="[NAME=]FILE[:WEIGHT]",
        help=TrainingSourcesConfig.__dataclass_fields__["extra_train"].metadata["help"] + "; repeatable",
    )
    add_dataclass_args(sources, TrainingSourcesConfig)
    add_dataclass_args(p.add_argument_group("stacker"), StackerConfig, only=STACKER_FLAGS)
    add_dataclass_args(p.add_argument_group("fold features"), FeatureConfig, only=FOLD_FEATURE_FLAGS)


def _training_source(spec: str) -> str:
    """argparse type: the spec, checked (so a typo fails at parse time with the flag named)."""
    try:
        TrainingSource.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return spec


def sources_from_args(args: argparse.Namespace) -> TrainingSourcesConfig:
    """``--extra-train`` and ``--fold-seeds`` as a :class:`TrainingSourcesConfig`."""
    return TrainingSourcesConfig(
        extra_train=tuple(getattr(args, "extra_train", None) or ()),
        **overrides_from_args(args, TrainingSourcesConfig),
    )


def run_config_from_data_args(args: argparse.Namespace) -> tuple[RunConfig, DataPaths]:
    """A RunConfig from :func:`add_data_args`'s arguments (stacker flags included), and the resolved paths."""
    paths = resolve_paths(args.train, args.test, args.out)
    config = RunConfig(
        train_path=str(paths.train),
        test_path=str(paths.test),
        out_dir=str(paths.out_dir),
        n_folds=args.folds,
        seed=args.seed,
        progress=not args.no_progress,
    )
    config.features.n_jobs = args.n_jobs if args.n_jobs is not None else feature_workers()
    if args.groups:
        config.features.groups = expand_groups([g.strip() for g in args.groups.split(",") if g.strip()])
    for spec in args.source:
        name, _, files = spec.partition("=")
        if not files or "," not in files:
            raise UsageError(f"--source expects NAME=OOF,TEST, got {spec!r}")
        config.extra_sources[name] = files
    for name in FOLD_FEATURE_FLAGS:
        if getattr(args, name, None) is not None:
            setattr(config.features, name, getattr(args, name))
    stacker = overrides_from_args(args, StackerConfig)
    if "num_threads" not in stacker:  # free cores now (pipelines.runtime.resources); results do not depend on it
        stacker["num_threads"] = lightgbm_threads()
    config.stacker = dataclasses.replace(config.stacker, **stacker)
    config.allow_worse_than_prior = bool(getattr(args, "allow_worse_than_prior", False))
    config.test_calibration = getattr(args, "test_calibration", None) or "auto"
    config.sources = sources_from_args(args)
    return config, paths


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    return run_config_from_data_args(args)[0]


def apply_params_file(config: RunConfig, args: argparse.Namespace) -> None:
    """``--params best_params.json`` (from pipelines.tune), then ``--calibration``, onto ``config.stacker``."""
    changes: dict[str, Any] = {}
    if getattr(args, "params", None):
        best = load_params_file(args.params)
        changes["params"] = {**config.stacker.params, **best["params"]}
        changes["calibration"] = best.get("calibration", config.stacker.calibration)
    if getattr(args, "calibration", None):
        changes["calibration"] = args.calibration
    config.stacker = dataclasses.replace(config.stacker, **changes)  # validated again in __post_init__


def add_stacker_choice_args(p: argparse.ArgumentParser) -> None:
    """``--params`` and ``--calibration`` (full_run and ablation)."""
    p.add_argument("--params", help="best-params JSON from pipelines.tune (stacker overrides and calibration)")
    add_dataclass_args(p, StackerConfig, only=("calibration",))


def add_test_calibration_arg(p: argparse.ArgumentParser) -> None:
    """``--test-calibration`` (full_run, predict): which calibrator scores the test rows."""
    p.add_argument(
        "--test-calibration",
        choices=CALIBRATION_CHOICES,
        default="auto",
        help="in-source: the calibrator fitted on the training sources' OOF rows; new-source: the one fitted on"
        " their leave-one-source-out predictions (several tie-bearing sources only); auto (default): new-source"
        " when adversarial validation finds the test rows unlike every training source",
    )


def add_prior_guard_args(p: argparse.ArgumentParser) -> None:
    """``--allow-worse-than-prior`` (full_run): see pipelines.stages.prior_guard."""
    p.add_argument(
        "--allow-worse-than-prior",
        action="store_true",
        help="submit the stacker even when its OOF log loss is worse than the class prior's (default: the prior)",
    )
