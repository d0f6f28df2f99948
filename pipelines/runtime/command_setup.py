"""What every command does first: one log format, one argument-parser shape and one parse path
(``--config FILE.json``, then the flags; see :mod:`pipelines.runtime.config_file` for the file's shape)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pipelines.runtime.config_file import (
    ConfigFileError,
    check_section,
    check_tree,
    describe_kind,
    json_value_fits,
    read_config_file,
    without_run_location,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    """INFO to stderr with timestamps (a no-op when logging is already configured, as under pytest)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def command_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m <module>``'s parser, its help the module docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


SECTION_HELP = "JSON settings: this command's options in a {!r} section (flag names, '_' for '-'); flags override it"


def add_config_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--config", metavar="FILE.json", help=help_text)


def parse_command(
    p: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: str,
    tree: type | None = None,
    tree_dests: Collection[str] = (),
) -> argparse.Namespace:
    """The one parse path of every command: the ``--config`` file (when given), then the flags given.

    ``tree``: the dataclass the file's top level describes (``RunConfig``), checked key by key and kept
    as ``args.config_tree``; ``tree_dests``: the flags that set a field of it (so not section keys).
    ``command``: the section holding the command's other options (``{"tune": {"n_trials": 50}}``),
    keyed by flag name; they become the parser's defaults, so a flag given still wins.
    ``args.config_is_run_report``: the file is a run's ``report.json`` (its run-location fields left out).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    path = pre.parse_known_args(argv)[0].config
    data, is_report = read_config_file(path) if path else ({}, False)
    section = data.pop(command, {})
    if tree is not None:
        check_tree(data, tree, path)
        if is_report:
            data = without_run_location(data, tree)
    elif data:
        key = sorted(data)[0]
        raise ConfigFileError(
            f"--config {path}: unknown key {key!r} (this command's options go in a {command!r} object)"
        )
    actions = {a.dest: a for a in p._actions if a.option_strings and a.dest not in ("help", "config")}
    own = {dest for dest in actions if dest not in tree_dests}
    for key, value in check_section(section, own, path, command).items():
        _check_value(actions[key], value, f"--config {path}: {command}.{key}")
        actions[key].required = False  # the file gives it
    p.set_defaults(**section)
    args = p.parse_args(argv)
    args.config_tree = data
    args.config_is_run_report = is_report
    return args


def _check_value(action: argparse.Action, value: Any, where: str) -> None:
    """A file value is not parsed by argparse (only string defaults are): its kind and choices are checked here."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where} must be true or false, got {value!r}")
    elif isinstance(action, argparse._AppendAction):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigFileError(f"{where} must be a list of strings, got {value!r}")
    elif action.type in (int, float) and not json_value_fits(value, action.type):
        raise ConfigFileError(f"{where} must be {describe_kind(action.type)}, got {value!r}")
    elif action.choices is not None and value not in action.choices:
        raise ConfigFileError(f"{where}: {value!r} is not one of {list(action.choices)}")
    elif isinstance(action, argparse._StoreAction) and action.type in (None, str, Path) and not isinstance(value, str):
        raise ConfigFileError(f"{where} must be a string, got {value!r}")  # text and paths, as typed on the line
