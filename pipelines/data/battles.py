"""Load Kaggle-schema battle CSVs (or in-memory frames) into plain DataFrames of parsed turns.

Bad input must fail loudly, naming the file, the line in the file and the column; odd but usable
input is either read exactly as its clean twin would be (BOM, CRLF, blank lines, gzip, UTF-16,
``;``/tab delimiters, a trailing comma on every line, unnamed index columns) or kept and counted
so the run report can say what was repaired (invalid JSON, ``null`` turns, lone surrogates).

The CSV is parsed here with :mod:`csv` rather than ``pandas.read_csv``: pandas silently turns the
first field into the index when rows have more fields than the header, shifting every column.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, N_CLASSES, TEXT_COLUMNS, swap_labels
from pipelines.formats.schema import clean_text
from pipelines.runtime.errors import UserError

log = logging.getLogger(__name__)

TURN_COLUMNS = {"prompt": "prompt_turns", "response_a": "a_turns", "response_b": "b_turns"}
ALT_DELIMITERS = (";", "\t", "|")
MAX_SHIFT_SHARE = 0.5  # more invalid-JSON text cells than this: columns are shifted, not "repairable"
# Kaggle ids are integers; combined multi-source files use "<source>:<id>" tokens. Prompt or answer
# text that slid into the id column (shifted columns) has spaces or JSON brackets and is refused.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"


class DataError(UserError, ValueError):
    """Input data that cannot be used as it is; the message names file, line (or row) and column."""


@dataclass
class ParseReport:
    """What loading had to repair, per text column; goes into the run report."""

    path: str
    rows: int = 0
    invalid_json: dict[str, int] = field(default_factory=dict)
    null_turns: dict[str, int] = field(default_factory=dict)
    surrogates: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # format fixes applied while reading (gzip, BOM, ...)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_turns(raw: object) -> tuple[list[str], str | None]:
    """Parse one JSON-list cell into turns; returns (turns, problem) where problem is None,
    "invalid_json" (kept as one raw turn) or "null_turns" (nulls became empty strings)."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return [""], "invalid_json"
    text = str(raw)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return [text], "invalid_json"
    if isinstance(value, list):
        problem = "null_turns" if any(v is None for v in value) else None
        turns = ["" if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in value]
        return (turns or [""]), problem
    if isinstance(value, str):
        return [value], "invalid_json"
    return [text], "invalid_json"


# --------------------------------------------------------------------------- reading a file


@dataclass
class RawTable:
    """A CSV as strings, with the file line on which each data row starts (for error messages)."""

    frame: pd.DataFrame
    lines: np.ndarray
    notes: list[str]


def _decode(path: Path, notes: list[str]) -> str:
    """The file's text: gzip and UTF-16 undone, a BOM dropped; bytes that are not UTF-8 are kept
    as escapes so that :func:`_check_bytes` can name their line and column."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a CSV file")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: gzip-compressed but damaged ({exc})") from exc
        notes.append("gzip-compressed")
    if data[:4] == b"PK\x03\x04":
        raise DataError(f"{path}: a zip archive (or Excel file), not a CSV file; unpack or export it as CSV")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: starts with a UTF-16 BOM but is not valid UTF-16 ({exc})") from exc
        notes.append("UTF-16")
    else:
        text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
        notes.append("byte-order mark")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    if _looks_like_json(text):
        raise DataError(f"{path}: line 1: looks like JSON, not a CSV file with a header")
    return text


def _looks_like_json(text: str) -> bool:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        return True
    if "\n" in stripped or "," in stripped:
        return False
    try:
        json.loads(stripped)  # a bare number, string, true/false/null
    except ValueError:
        return False
    return True


def _parse(path: Path, text: str, delimiter: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and each row's first file line; blank lines are skipped, a quote left open is
    refused at the line where its record starts."""
    csv.field_size_limit(min(2**31 - 1, 1 << 40))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    previous = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            start = previous + 1
            raise DataError(_quote_error(path, text, delimiter, start, reader.line_num, header, str(exc))) from exc
        start, previous = previous + 1, reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = record
            continue
        rows.append(record)
        lines.append(start)
    if header is None:
        raise DataError(f"{path}: file is empty")
    return header, rows, lines


def _quote_error(
    path: Path, text: str, delimiter: str, start: int, stop: int, header: list[str] | None, why: str
) -> str:
    """Name the field whose quoting breaks, by scanning the record from the line it starts on."""
    record = "".join(text.splitlines(keepends=True)[start - 1 :])
    column = _column_name(header, _bad_quote_field(record, delimiter))
    span = f"line {start}" if stop <= start else f"line {start} (the record runs on to line {stop})"
    return f"{path}: {span}, column {column}: malformed quoting ({why}); an unbalanced '\"'?"


def _bad_quote_field(record: str, delimiter: str) -> int:
    """Index of the first field that opens a quote it never closes, or closes one and goes on."""
    field, i, n = 0, 0, len(record)
    while i < n:
        if record[i] == '"':
            i += 1
            while True:
                close = record.find('"', i)
                if close < 0:
                    return field  # never closed
                if record.startswith('""', close):
                    i = close + 2
                    continue
                i = close + 1
                break
            if i < n and record[i] not in (delimiter, "\r", "\n"):
                return field  # text after the closing quote
        else:
            while i < n and record[i] not in (delimiter, "\r", "\n"):
                i += 1
        if i >= n or record[i] in "\r\n":
            return field
        field, i = field + 1, i + 1
    return field


def _column_name(header: list[str] | None, index: int) -> str:
    if header is not None and index < len(header) and header[index].strip():
        return repr(header[index].strip())
    return f"#{index + 1}"


def _pick_delimiter(path: Path, text: str, notes: list[str], schema: Iterable[str]) -> str:
    """``,`` unless the first line is one field that splits on ``;``, tab or ``|`` into the schema."""
    first = text.lstrip("\r\n").split("\n", 1)[0]
    if "," in first:
        return ","
    for delimiter in ALT_DELIMITERS:
        names = {n.strip().strip('"') for n in first.split(delimiter)}
        if set(schema) <= names:
            notes.append(f"delimiter {delimiter!r}")
            return delimiter
    return ","


def _check_header(path: Path, header: list[str]) -> list[str]:
    names = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            continue
        if name in seen:
            raise DataError(
                f"{path}: line 1, column {name!r}: header names it twice (fields {seen[name] + 1} and {i + 1})"
            )
        seen[name] = i
    return names


def _check_widths(path: Path, names: list[str], rows: list[list[str]], lines: list[int], notes: list[str]) -> None:
    """Every row has the header's fields; empty extra fields (a trailing comma) are dropped."""
    width = len(names)
    while width and not names[width - 1]:
        width -= 1  # a trailing comma on the header line
    trailing = 0
    for i, row in enumerate(rows):
        if len(row) == width:
            continue
        line = lines[i]
        if len(row) > width and all(not c.strip() for c in row[width:]):
            del row[width:]
            trailing += 1
            continue
        spans = _spans_lines(row)
        hint = (
            f"; the record runs over several lines from column {_column_name(names, spans)}: an unbalanced '\"'?"
            if spans is not None
            else ""
        )
        if len(row) > width:
            raise DataError(
                f"{path}: line {line}, column #{width + 1} (after {_column_name(names, width - 1)}): "
                f"{len(row)} fields but the header has {width}; extra value {row[width][:40]!r}{hint}"
            )
        raise DataError(
            f"{path}: line {line}, column {_column_name(names, len(row))}: missing; "
            f"{len(row)} fields but the header has {width}{hint}"
        )
    del names[width:]
    if trailing:
        notes.append(f"trailing empty field dropped on {trailing} line(s)")


def _spans_lines(row: list[str]) -> int | None:
    for j, cell in enumerate(row):
        if "\n" in cell or "\r" in cell:
            return j
    return None


def _check_cells(path: Path, frame: pd.DataFrame, lines: np.ndarray, text: str) -> None:
    """Refuse NUL characters and bytes that are not UTF-8, naming their line and column."""
    for pattern, what in ((re.compile("\x00"), "a NUL byte (a binary or corrupt file?)"), (_ESCAPED_BYTE, None)):
        if not pattern.search(text):
            continue
        for col in frame.columns:
            hits = frame[col].str.contains(pattern, regex=True)
            if hits.any():
                row = int(np.flatnonzero(hits.to_numpy())[0])
                if what is None:
                    found = pattern.search(frame[col].iloc[row])
                    assert found is not None  # the column matched at this row
                    byte = ord(found.group()) - 0xDC00
                    what = f"byte 0x{byte:02x} is not UTF-8 (latin-1 or cp1252?); save the file as UTF-8"
                raise DataError(f"{path}: line {lines[row]}, column {col!r}: {what}")
        header_hit = pattern.search(text.split("\n", 1)[0])
        if header_hit:
            raise DataError(f"{path}: line 1: header contains {what or 'bytes that are not UTF-8'}")


BATTLE_SCHEMA = ("id", *TEXT_COLUMNS)  # the columns that identify a battle file's header
LABELS_SCHEMA = ("id", *CLASS_COLUMNS)  # a labels (sample_submission) or probability file's header


def read_battle_csv(path: str | Path) -> RawTable:
    """A battle CSV file as a DataFrame of strings (no type guessing, no index inference) with file lines."""
    return read_table(path, BATTLE_SCHEMA)


def read_table(path: str | Path, schema: Iterable[str]) -> RawTable:
    """Any tabular input (battles, labels, probabilities) read by the one hardened reader: gzip, UTF-16,
    BOM, ``;``/tab delimiters (recognised by the ``schema`` column names in the header), trailing commas
    and unnamed index columns handled; every refusal names the file, line and column."""
    path = Path(path)
    notes: list[str] = []
    text = _decode(path, notes)
    delimiter = _pick_delimiter(path, text, notes, schema)
    header, rows, lines = _parse(path, text, delimiter)
    names = _check_header(path, header)
    if not rows:
        raise DataError(f"{path}: line 2: file has a header but no rows")
    _check_widths(path, names, rows, lines, notes)
    keep = [i for i, n in enumerate(names) if n]
    if len(keep) < len(names):
        notes.append(f"{len(names) - len(keep)} unnamed column(s) ignored")
    frame = pd.DataFrame([[row[i] for i in keep] for row in rows], columns=[names[i] for i in keep], dtype=object)
    line_array = np.asarray(lines, dtype=np.int64)
    _check_cells(path, frame, line_array, text)
    return RawTable(frame, line_array, notes)


# --------------------------------------------------------------------------- validating a frame


class _Where:
    """Formats the place of a cell: the file line when known, else the frame's row (1-based)."""

    def __init__(self, name: str, lines: np.ndarray | None):
        self.name, self.lines = name, lines

    def __call__(self, pos: int, column: str | None = None) -> str:
        place = f"line {int(self.lines[pos])}" if self.lines is not None else f"row {pos + 1}"
        return f"{self.name}: {place}" + (f", column {column!r}" if column else "")


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a string; missing values become "" and integral floats lose their ".0"."""

    def text(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return pd.DataFrame({str(c): [text(v) for v in frame[c].tolist()] for c in frame.columns}, dtype=object)


def _check_columns(frame: pd.DataFrame, name: str, labelled: bool) -> None:
    missing = [c for c in ("id", *TEXT_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: line 1: missing column(s) {missing}; found {list(frame.columns)[:12]}")
    if labelled:
        missing = [c for c in CLASS_COLUMNS if c not in frame.columns]
        if missing:
            hint = " (a test file given as train?)" if len(missing) == len(CLASS_COLUMNS) else ""
            raise DataError(f"{name}: line 1: missing label column(s) {missing}{hint}")


def _check_ids(frame: pd.DataFrame, where: _Where) -> pd.Series:
    ids = frame["id"].str.strip()
    empty = ids == ""
    if empty.any():
        raise DataError(f"{where(int(np.flatnonzero(empty.to_numpy())[0]), 'id')}: empty id")
    not_id = ~ids.str.fullmatch(_ID)
    if not_id.any():
        row = int(np.flatnonzero(not_id.to_numpy())[0])
        raise DataError(
            f"{where(row, 'id')}: id {ids.iloc[row][:40]!r} is not an id (an integer, or letters, digits and _.:/-)"
            f" ({int(not_id.sum())} such row(s); shifted columns?)"
        )
    dup = ids.duplicated(keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        first_place = where(first).split(": ", 1)[1]
        raise DataError(
            f"{where(row, 'id')}: duplicate id {ids.iloc[row]!r} (first seen in {first_place});"
            f" {int(dup.sum())} duplicate(s) in all"
        )
    return ids


def _labels(frame: pd.DataFrame, where: _Where) -> np.ndarray:
    """One-hot winner columns to class indices 0=a, 1=b, 2=tie, or a DataError naming the first bad cell."""
    values = np.zeros((len(frame), N_CLASSES), dtype=np.int64)
    for j, col in enumerate(CLASS_COLUMNS):
        cells = frame[col].str.strip()
        parsed = pd.to_numeric(cells, errors="coerce")
        bad = ~parsed.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{where(row, col)}: expected 0 or 1, got {frame[col].iloc[row][:40]!r}")
        values[:, j] = parsed.to_numpy(dtype=np.int64)
    not_one_hot = values.sum(axis=1) != 1
    if not_one_hot.any():
        row = int(np.flatnonzero(not_one_hot)[0])
        raise DataError(
            f"{where(row)}, columns {list(CLASS_COLUMNS)}: labels are not one-hot "
            f"({values[row].tolist()}); {int(not_one_hot.sum())} such row(s)"
        )
    return values.argmax(axis=1)


def winner_columns(frame: pd.DataFrame, name: str, lines: np.ndarray | None = None) -> pd.DataFrame:
    """The winner columns as 0/1 integers (a file read as text holds them as strings), or a DataError
    naming the file, line and column of the first cell that is not 0/1 or not one-hot."""
    labels = _labels(_as_text(frame[list(CLASS_COLUMNS)]), _Where(name, lines))
    return pd.DataFrame(np.eye(N_CLASSES, dtype=np.int64)[labels], columns=list(CLASS_COLUMNS), index=frame.index)


def validate_battles(
    frame: pd.DataFrame, name: str = "<frame>", labelled: bool | None = None, lines: np.ndarray | None = None
) -> bool:
    """Check columns, ids and labels of a Kaggle-schema frame of strings; return whether it is labelled.

    Raises :class:`DataError` naming ``name``, the file line (``lines``, one per row) or else the
    row, and the column.
    """
    if frame.empty:
        raise DataError(f"{name}: no rows")
    if labelled is None:
        labelled = any(c in frame.columns for c in CLASS_COLUMNS)
    _check_columns(frame, name, labelled)
    where = _Where(name, lines)
    _check_ids(frame, where)
    if labelled:
        _labels(frame, where)
    return labelled


def load_battles_frame(
    frame: pd.DataFrame,
    name: str = "<frame>",
    labelled: bool | None = None,
    *,
    lines: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> tuple[pd.DataFrame, ParseReport]:
    """Validate and parse an in-memory Kaggle-schema frame, exactly as :func:`load_battles` does a file.

    Output columns: ``id`` (str), ``prompt_turns``, ``a_turns``, ``b_turns`` (lists of str) and,
    for labelled data, ``label`` (0 = A wins, 1 = B wins, 2 = tie). Model names are never
    carried: test data has none, so nothing may depend on them. ``labelled=None`` detects.
    """
    if lines is None:  # a file's frame (from read_battle_csv) is strings already
        frame = _as_text(frame.reset_index(drop=True))
    labelled = validate_battles(frame, name, labelled, lines)
    where = _Where(name, lines)
    report = ParseReport(path=name, rows=len(frame), notes=list(notes or []))
    out = pd.DataFrame({"id": frame["id"].str.strip().to_numpy(dtype=object)})
    for col, turn_col in TURN_COLUMNS.items():
        counts = {"invalid_json": 0, "null_turns": 0, "surrogates": 0}
        parsed: list[list[str]] = []
        first_invalid = None
        for row, raw in enumerate(frame[col].to_numpy(dtype=object)):
            turns, problem = parse_turns(raw)
            if problem:
                counts[problem] += 1
                if problem == "invalid_json":
                    first_invalid = row if first_invalid is None else first_invalid
                    if len(report.examples) < 5:
                        report.examples.append(f"{where(row, col)}: not a JSON list; kept as one raw turn")
            cleaned = []
            had_surrogate = False
            for t in turns:
                t, bad = clean_text(t)
                had_surrogate |= bad
                cleaned.append(t)
            counts["surrogates"] += had_surrogate
            parsed.append(cleaned)
        if (
            first_invalid is not None
            and counts["invalid_json"] >= 2
            and counts["invalid_json"] > MAX_SHIFT_SHARE * len(frame)
        ):
            raise DataError(
                f"{where(first_invalid, col)}: {counts['invalid_json']} of {len(frame)} cells are not JSON lists of"
                " turns; columns shifted or not the Kaggle schema?"
            )
        out[turn_col] = pd.Series(parsed, dtype=object)
        report.invalid_json[col] = counts["invalid_json"]
        report.null_turns[col] = counts["null_turns"]
        report.surrogates[col] = counts["surrogates"]
    if labelled:
        out["label"] = _labels(frame, where)
    repaired = sum(report.invalid_json.values()) + sum(report.surrogates.values())
    if repaired:
        log.warning(
            "%s: repaired %d cell(s): invalid JSON %s, lone surrogates %s",
            name,
            repaired,
            report.invalid_json,
            report.surrogates,
        )
    if report.notes:
        log.info("%s: read with %s", name, "; ".join(report.notes))
    log.info("loaded %s: %d rows%s", name, len(out), " (labelled)" if labelled else "")
    return out, report


def load_battles(
    path: str | Path, *, labelled: bool | None = None, keep: Sequence[str] = ()
) -> tuple[pd.DataFrame, ParseReport]:
    """Read a train/test CSV into a DataFrame with parsed turn lists (see :func:`load_battles_frame`).

    ``keep``: further columns of the file (e.g. ``source``) carried as stripped strings when present,
    so that no second reader with other rules reads them. Errors name the file, the line and the column.
    """
    raw = read_battle_csv(path)
    battles, report = load_battles_frame(raw.frame, str(Path(path)), labelled, lines=raw.lines, notes=raw.notes)
    for column in keep:
        if column in raw.frame.columns:
            battles[column] = raw.frame[column].str.strip().to_numpy(dtype=object)
    return battles, report


def swap_battles(battles: pd.DataFrame) -> pd.DataFrame:
    """The same battles with A and B exchanged (labels too): the basis of swap augmentation."""
    swapped = battles.copy()
    swapped["a_turns"], swapped["b_turns"] = battles["b_turns"], battles["a_turns"]
    if "label" in battles:
        swapped["label"] = swap_labels(battles["label"].to_numpy())
    return swapped
