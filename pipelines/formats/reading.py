"""Reading inputs: .json/.jsonl files, optionally gzipped or inside a .zip, as (location, record) pairs."""

from __future__ import annotations

import gzip
import json
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipelines.formats.schema import ConversionError, PathLike

log = logging.getLogger(__name__)


def _parse_json_text(text: str, name: str) -> Iterator[tuple[str, object]]:
    """A JSON array (items: 'row N') or JSON Lines (records: 'line N', blank lines skipped)."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConversionError(f"{name} line {exc.lineno}: invalid JSON ({exc.msg})") from None
        for i, item in enumerate(items, 1):
            yield f"{name} row {i}", item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConversionError(f"{name} line {lineno}: invalid JSON ({exc.msg})") from None
        yield f"{name} line {lineno}", item


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{name}: not UTF-8 text ({exc})") from None


def iter_records(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, record) for every JSON object in a .json/.jsonl file, optionally .gz or inside a .zip."""
    name = str(path)
    if not path.is_file():
        raise ConversionError(f"{name}: file not found")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            members = [
                m
                for m in zf.namelist()
                if not m.endswith("/")
                and not m.startswith("__MACOSX/")
                and m.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz"))
            ]
            if not members:
                raise ConversionError(f"{name}: zip holds no .json/.jsonl file")
            blobs = [(m, zf.read(m)) for m in sorted(members)]
        for member, data in blobs:
            if member.endswith(".gz"):
                data = gzip.decompress(data)
            yield from _records_of(_parse_json_text(_decode(data, f"{name}:{member}"), f"{name}:{member}"))
        return
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise ConversionError(f"{name}: cannot read ({exc})") from None
    yield from _records_of(_parse_json_text(_decode(data, name), name))


def _records_of(items: Iterator[tuple[str, object]]) -> Iterator[tuple[str, dict]]:
    for where, item in items:
        if not isinstance(item, dict):
            raise ConversionError(f"{where}: expected a JSON object, got {type(item).__name__}")
        yield where, item


def require_rows(path: Path, n_before: int, n_after: int) -> None:
    if n_after == n_before:
        raise ConversionError(f"{path}: no rows")


def input_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise ConversionError("no input files given")
    for p in out:
        if not p.is_file():
            raise ConversionError(f"{p}: file not found")
    return out


def records_by_file(paths: PathLike | Sequence[PathLike], fmt: str, rows: list) -> Iterator[tuple[str, dict]]:
    """(location, record) of every input file; after each file, checks that it added to ``rows``."""
    for path in input_paths(paths):
        before = len(rows)
        yield from iter_records(path)
        require_rows(path, before, len(rows))
        log.info("%s: %s: %d rows", fmt, path, len(rows) - before)
