"""``--config FILE.json``: a command's settings as one JSON tree, every key checked against the dataclasses.

The tree mirrors the config dataclasses: a key is a field name, a nested dataclass (``RunConfig.stacker``)
is a nested object, a list of dataclasses (``RunConfig.encoders``) a list of objects. A key no field
has is refused with one line naming the file and the key's path, so a typo never silently falls back
to a default. Options a command has beyond its dataclasses sit in a section named after the command
(``{"tune": {"n_trials": 50}}``), keyed by the flag's name with ``_`` for ``-``.

A field's ``metadata["check"]`` (a callable raising ``ValueError``) checks its value too (LightGBM parameter
names). A run's ``report.json`` replays the run's settings but not where it wrote: fields marked
``metadata[RUN_LOCATION]`` (its out folder, submission, cache) are left out of it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from pipelines.runtime.errors import UserError

RUN_LOCATION = "run_location"  # field metadata: a path of the run's own outputs, never replayed from its report


class ConfigFileError(UserError, ValueError):
    """A ``--config`` file that cannot be read, is not a JSON object, or holds a key no setting has."""


def read_json_file(path: str | Path, where: str, error: type[ValueError]) -> Any:
    """The JSON value in ``path``, or ``error`` with one line saying why not (``where``: the flag and the path)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{where}: no such file") from None
    except IsADirectoryError:
        raise error(f"{where}: a folder, not a JSON file") from None
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None


def read_config_file(path: str | Path) -> tuple[dict[str, Any], bool]:
    """The JSON object in ``path`` and whether it is a run's ``report.json`` (then its ``config`` section,
    the settings the run ran with)."""
    where = f"--config {path}"
    data = read_json_file(path, where, ConfigFileError)
    if not isinstance(data, dict):
        raise ConfigFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("config"), dict) and "oof" in data:  # a run's report.json
        return dict(data["config"]), True
    return data, False


def without_run_location(data: dict[str, Any], cls: type) -> dict[str, Any]:
    """``data`` less the fields of ``cls`` marked :data:`RUN_LOCATION`: a replayed run writes its own outputs,
    never over the original run's submission (``report.json`` records where that one went)."""
    marked = {f.name for f in dataclasses.fields(cls) if f.metadata.get(RUN_LOCATION)}
    return {key: value for key, value in data.items() if key not in marked}


def check_tree(data: dict[str, Any], cls: type, path: str | Path, where: str = "") -> None:
    """Refuse (with the file and the key's dotted path) any key of ``data`` that ``cls``'s tree lacks."""
    if not isinstance(data, dict):
        raise ConfigFileError(f"--config {path}: {where.rstrip('.') or 'the file'} must be a JSON object")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key in getattr(cls, "RETIRED", ()):  # a setting older files hold and nothing reads any more
            continue
        if key not in known:
            raise ConfigFileError(
                f"--config {path}: unknown key '{where}{key}' (known: {', '.join(sorted(known)) or 'none'})"
            )
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            check_tree(value, typing.cast(type, kind), path, f"{where}{key}.")
        elif typing.get_origin(kind) is list and dataclasses.is_dataclass(item := typing.get_args(kind)[0]):
            if not isinstance(value, list):
                raise ConfigFileError(f"--config {path}: {where}{key} must be a JSON list")
            for i, entry in enumerate(value):
                check_tree(entry, typing.cast(type, item), path, f"{where}{key}[{i}].")
        elif not json_value_fits(value, kind):
            raise ConfigFileError(f"--config {path}: {where}{key} must be {describe_kind(kind)}, got {value!r}")
        _run_check(known[key], value, f"--config {path}: {where}{key}")


def _run_check(f: dataclasses.Field, value: Any, where: str) -> None:
    """The field's own ``metadata["check"]`` on a file value, its ``ValueError`` as one line naming file and key."""
    check = f.metadata.get("check")
    if check is None:
        return
    try:
        check(value)
    except ValueError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None


_JSON_KINDS: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,), dict: (dict,)}


def json_value_fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value can set a field annotated ``kind`` (unknown annotations are left to the dataclass)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(json_value_fits(value, arg) for arg in args)
    if kind is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (tuple, list):
        return isinstance(value, list) and all(
            json_value_fits(v, args[0]) for v in value if args and args[0] is not Ellipsis
        )
    if origin is dict:
        return isinstance(value, dict)
    if kind in _JSON_KINDS:
        return isinstance(value, _JSON_KINDS[kind]) and (kind is bool or not isinstance(value, bool))
    return True


def describe_kind(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_kind(arg) for arg in args)
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (tuple, list):
        return "a list"
    names = {type(None): "null", int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(kind, "an object" if kind is dict or origin is dict else getattr(kind, "__name__", str(kind)))


def check_section(section: object, known: set[str], path: str | Path, name: str) -> dict[str, Any]:
    """A command's own section (``{"tune": {...}}``), its keys checked against the command's option names."""
    if not isinstance(section, dict):
        raise ConfigFileError(f"--config {path}: {name} must be a JSON object")
    for key in section:
        if key not in known:
            raise ConfigFileError(
                f"--config {path}: unknown key '{name}.{key}' (known: {', '.join(sorted(known)) or 'none'})"
            )
    return section
