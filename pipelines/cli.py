"""Command-line arguments: one parse path for every command (:func:`parse_command`), a generic flag
builder from dataclass fields, and the arguments the entry points share (data: full_run, tune,
ablation; stacker settings).

A flag's help is written once, next to its field (``field(metadata={"help": ...})``); every flag
defaults to None so that only the flags given override a config (``overrides_from_args``), except in the
commands whose file is only their own section (loso, predict: ``keep_defaults``). The
settings come, in this order, from the dataclass defaults, ``--config FILE.json`` (a
:class:`RunConfig` tree, checked key by key by :mod:`pipelines.runtime.config_file`, or a run's
``report.json``, whose ``config`` section is the tree it ran with), then the flags given; every command
parses through :func:`pipelines.runtime.command_setup.parse_command`.

Why not ``transformers.HfArgumentParser`` (read on 5.x; 4.x's ``_parse_dataclass_field`` has the same design):
it maps each *flat* dataclass to flags and hands ``field.metadata`` straight to ``add_argument``.
``RunConfig`` is a tree (``features``, ``stacker``, ``sources`` are dataclasses, ``encoders`` a list
of them, ``stacker.params`` a dict): such fields become ``type=FeatureConfig``/``type=dict`` flags
that cannot parse, ``tuple[str, ...]`` becomes ``type=tuple``, and our metadata keys (``cli``, a
callable ``choices`` read from the tie-handling registry) are not ``add_argument`` keywords. Its
defaults are the dataclass defaults, so "a flag given overrides the file, the file overrides the
default" cannot be told apart after parsing; ``parse_json_file`` is flat (one namespace for every
dataclass: ``seed`` and ``swap_augment`` are fields of two of ours each) and its error names neither
file nor key path. It also spells every flag twice (``--n_folds`` and ``--n-folds``) and would add
about a second of ``import transformers`` to each command's start. The builder below is the part of
it we need (about 40 lines), over the same dataclass fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from features.groups import expand_groups
from pipelines.config.params_file import load_params_file
from pipelines.config.run_config import FeatureConfig, RunConfig, SourceFiles
from pipelines.data.training_sets import TrainingSource, TrainingSourcesConfig
from pipelines.runtime.command_setup import add_config_arg, parse_command
from pipelines.runtime.errors import UsageError
from pipelines.runtime.paths import DataPaths, resolve_paths
from pipelines.runtime.resources import feature_workers, lightgbm_threads
from pipelines.stages.fold_feature_kinds import setting_names
from stacking.calibration_choice import TEST_CALIBRATION_HELP, TEST_CALIBRATIONS
from stacking.config import StackerConfig

# every fold-feature kind's settings (--tfidf, --embedder, ...); off by default: benchmarks/transformer_gain.py
FOLD_FEATURE_FLAGS = setting_names()
STACKER_FLAGS = ("num_boost_round", "early_stopping_rounds", "num_threads", "tie_handling")  # every command


REPEATED = "repeated"  # _flag_type's kind of a ``tuple[str, ...]`` field: a repeatable flag, one item each time


def _flag_type(annotation: Any) -> tuple[Any, tuple | None]:
    """(scalar type, choices) of a field annotation such as ``int | None``, ``Path`` or ``Literal["a", "b"]``;
    ``tuple[str, ...]`` is :data:`REPEATED`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), tuple(args)
    if typing.get_origin(annotation) is tuple and typing.get_args(annotation) == (str, Ellipsis):
        return REPEATED, None
    if annotation in (int, float, str, bool, Path):
        return annotation, None
    raise TypeError(f"no command-line flag for a field of type {annotation!r}")


def _cli_fields(cls: type, only: Iterable[str] | None, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    wanted = None if only is None else list(only)
    chosen = [
        f
        for f in dataclasses.fields(cls)
        if f.metadata.get("cli", True)
        and (wanted is None or f.name in wanted)
        and f.name not in exclude
        and not f.name.isupper()
    ]
    if wanted is not None and len(chosen) != len(wanted):
        raise ValueError(f"{cls.__name__} has no flag field(s) {sorted(set(wanted) - {f.name for f in chosen})}")
    return chosen


def field_default(f: dataclasses.Field) -> Any:
    """A field's default (its factory's value, read now: e.g. a registry's names), or MISSING when required."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(default: Any, kind: Any) -> str:
    """A default as typed on the command line (an empty text as ``''``)."""
    if kind is REPEATED:
        return "repeatable" + (f"; default {','.join(default)}" if default else "")
    return f"default {repr(default) if default == '' else default}"


class _ReplaceDefault(argparse._AppendAction):
    """A repeatable flag whose first use replaces the default list (one from a ``--config`` file) instead of
    adding to it, as the settings-file rule says: a flag given wins."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is self.default:  # the first use: the default is still there
            setattr(namespace, self.dest, None)
        super().__call__(parser, namespace, values, option_string)


def add_dataclass_args(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    prefix: str = "",
    only: Iterable[str] | None = None,
    *,
    exclude: Iterable[str] = (),
    keep_defaults: bool = False,
) -> None:
    """One ``--<prefix><field-name>`` flag per field of dataclass ``cls`` (``only``: these fields; ``exclude``:
    all but these). A field without a default is a required flag; a ``tuple[str, ...]`` field a repeatable one.

    Flags default to None (only the flags given override a ``--config`` tree); ``keep_defaults``: they carry
    the field defaults instead (a command without a tree, whose parser is also read for its defaults)."""
    hints = typing.get_type_hints(cls)
    for f in _cli_fields(cls, only, exclude):
        kind, choices = _flag_type(hints[f.name])
        choices = f.metadata["choices"]() if "choices" in f.metadata else choices  # e.g. a registry's names
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = field_default(f)
        required = default is dataclasses.MISSING
        shown = "required" if required else _shown(default, kind)
        help_text = f"{f.metadata.get('help', '')} ({shown})".strip()
        dest = (prefix + f.name).replace("-", "_")
        kwargs: dict[str, Any] = {"dest": dest, "help": help_text}
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default if keep_defaults else None
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind is REPEATED:
            kwargs["default"] = list(default) if keep_defaults and default else None
            p.add_argument(flag, action=_ReplaceDefault, **kwargs)
        else:
            p.add_argument(flag, type=kind, choices=choices, **kwargs)


def overrides_from_args(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` whose flags (from :func:`add_dataclass_args`) were given."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in _cli_fields(cls, None):
        value = getattr(args, (prefix + f.name).replace("-", "_"), None)
        if value is not None:
            out[f.name] = tuple(value) if _flag_type(hints[f.name])[0] is REPEATED else value
    return out


ENCODER_FLAG_PREFIX = "encoder_"  # full_run's encoder settings: --encoder-<field>
RUN_CONFIG_HELP = (
    "JSON settings: a RunConfig tree (keys as its fields, sections features/stacker/sources/encoders) and this"
    " command's own options in a section named after it, or a run's report.json; flags given override it"
)
RUN_TREE_DESTS = frozenset(  # flags that set RunConfig fields (full_run's too): in a file, they sit in the tree
    {"submission", "calibration", "allow_worse_than_prior", "test_calibration", "encoder", "save_encoders"}
    | {"time_budget_hours"}
)


def parse_run_command(p: argparse.ArgumentParser, argv: list[str] | None, command: str) -> argparse.Namespace:
    """:func:`~pipelines.runtime.command_setup.parse_command` for a command whose file is a :class:`RunConfig`
    tree (full_run, tune, ablation): the flags that set a RunConfig field are set in the tree, not the section."""
    probe = argparse.ArgumentParser(add_help=False)
    add_data_args(probe)
    tree_dests = {a.dest for a in probe._actions} | RUN_TREE_DESTS
    tree_dests |= {a.dest for a in p._actions if a.dest.startswith(ENCODER_FLAG_PREFIX)}
    args = parse_command(p, argv, command, RunConfig, tree_dests)
    if args.config_is_run_report and not args.out:
        raise UsageError(
            f"--config {args.config}: a run's report.json: give --out for this run (the report's out folder,"
            " submission and cache belong to the run that wrote it and are not repeated)"
        )
    return args


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The data arguments every entry point takes, plus quick-look stacker settings."""
    add_config_arg(p, RUN_CONFIG_HELP)
    p.add_argument("--train", help="train.csv (Kaggle schema); default: Kaggle input or the bundled sample")
    p.add_argument("--test", help="test.csv (Kaggle schema)")
    p.add_argument("--out", help="run directory (default outputs/run; /kaggle/working/arena_pref_run on Kaggle)")
    p.add_argument("--folds", type=int, help="grouped CV folds (default 5)")
    p.add_argument("--seed", type=int, help="seeds folds and LightGBM (default 42)")
    p.add_argument(
        "--groups",
        help="comma-separated feature groups; 'default' stands for the default ones, so "
        "'default,sentiment,spelling' adds the opt-in groups (default: default)",
    )
    p.add_argument(
        "--source",
        action="append",
        metavar="NAME=OOF,TEST",
        help="extra probability source: OOF file for train and prediction file for test",
    )
    p.add_argument("--n-jobs", type=int, help="feature extraction processes (default: the cores this process may use)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    sources = p.add_argument_group("training sources")
    sources.add_argument(
        "--extra-train",
        action="append",
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


def sources_from_args(args: argparse.Namespace, base: TrainingSourcesConfig | None = None) -> TrainingSourcesConfig:
    """``--extra-train`` and ``--fold-seeds`` over ``base`` (the ``--config`` file's, else the defaults)."""
    if base is None:
        base = RunConfig.from_dict(_paths_free_tree(args)).sources
    changes: dict[str, Any] = overrides_from_args(args, TrainingSourcesConfig)
    if getattr(args, "extra_train", None):  # a repeatable flag given replaces the file's list
        changes["extra_train"] = tuple(args.extra_train)
    return dataclasses.replace(base, **changes)


def _paths_free_tree(args: argparse.Namespace) -> dict[str, Any]:
    return {"train_path": "", "test_path": "", "out_dir": "", **(getattr(args, "config_tree", None) or {})}


def run_config_from_data_args(args: argparse.Namespace) -> tuple[RunConfig, DataPaths]:
    """A RunConfig from the ``--config`` tree (if any) and :func:`add_data_args`'s flags, and the resolved paths."""
    tree = getattr(args, "config_tree", None) or {}
    paths = resolve_paths(
        args.train or tree.get("train_path"), args.test or tree.get("test_path"), args.out or tree.get("out_dir")
    )
    config = RunConfig.from_dict(
        {**tree, "train_path": str(paths.train), "test_path": str(paths.test), "out_dir": str(paths.out_dir)}
    )
    for name, field_name in (("folds", "n_folds"), ("seed", "seed"), ("progress", "progress")):
        if getattr(args, name, None) is not None:
            setattr(config, field_name, getattr(args, name))
    if args.n_jobs is not None:
        config.features.n_jobs = args.n_jobs
    elif "n_jobs" not in tree.get("features", {}):
        config.features.n_jobs = feature_workers()
    if args.groups is not None:
        config.features.groups = expand_groups(_group_names(args.groups))
    else:  # a file may name 'default' too
        config.features.groups = expand_groups(config.features.groups)
    if args.source:  # a repeatable flag given replaces the file's sources
        config.extra_sources = {}
    for spec in args.source or ():
        name, _, files = spec.partition("=")
        try:
            if not name:
                raise ValueError("no name")
            config.extra_sources[name] = SourceFiles.parse(files)
        except ValueError:
            raise UsageError(f"--source expects NAME=OOF,TEST, got {spec!r}") from None
    for name in FOLD_FEATURE_FLAGS:
        if getattr(args, name, None) is not None:
            setattr(config.features, name, getattr(args, name))
    stacker = overrides_from_args(args, StackerConfig)
    if "num_threads" not in stacker and "num_threads" not in tree.get("stacker", {}):
        stacker["num_threads"] = lightgbm_threads()  # free cores now (runtime.resources); results do not depend on it
    config.stacker = dataclasses.replace(config.stacker, **stacker)
    if getattr(args, "allow_worse_than_prior", None) is not None:
        config.allow_worse_than_prior = args.allow_worse_than_prior
    if getattr(args, "test_calibration", None) is not None:
        config.test_calibration = args.test_calibration
    config.sources = sources_from_args(args, config.sources)
    return config, paths


def _group_names(text: str) -> list[str]:
    """``--groups``' names; an empty value is refused (it named no group, so it must not mean the default)."""
    names = [g.strip() for g in text.split(",") if g.strip()]
    if not names:
        raise UsageError(f"--groups {text!r}: names no feature group (e.g. 'default' or 'default,sentiment')")
    return names


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
    """``--test-calibration`` (full_run; predict has it as a ``PredictConfig`` field): the test rows' calibrator."""
    p.add_argument("--test-calibration", choices=TEST_CALIBRATIONS, help=f"{TEST_CALIBRATION_HELP} (default auto)")


def add_prior_guard_args(p: argparse.ArgumentParser) -> None:
    """``--allow-worse-than-prior`` (full_run): see pipelines.model.prior_guard."""
    p.add_argument(
        "--allow-worse-than-prior",
        action="store_true",
        default=None,
        help="submit the stacker even when its OOF log loss is worse than the class prior's (default: the prior)",
    )
