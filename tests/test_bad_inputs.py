"""Every malformed-input class is accepted exactly as its clean twin, or refused naming file, line and column.

One row of ``CASES`` per input class. ``tests/INPUT_CLASSES.md`` is rendered from the same table
(``python -m tests.test_bad_inputs`` rewrites it; a test checks it is current), so every row of
that table is a test here.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from pipelines.data.battles import DataError, load_battles, load_battles_frame
from pipelines.runtime.errors import USER_ERROR_EXIT
from tests.conftest import ROOT, make_battles

CLEAN = make_battles(12, seed=5)
CLEAN_TEXT = CLEAN.to_csv(index=False)
LINES = CLEAN_TEXT.splitlines()  # LINES[0] is the header (file line 1); data row i is on file line i + 2
MD_PATH = ROOT / "tests" / "INPUT_CLASSES.md"


def _text(text: str) -> bytes:
    return text.encode("utf-8")


def _lines(lines: list[str], end: str = "\n") -> bytes:
    return _text(end.join(lines) + end)


def _frame(frame: pd.DataFrame, **kwargs) -> bytes:
    return _text(frame.to_csv(index=False, **kwargs))


def _set(row: int, column: str, value) -> bytes:
    frame = CLEAN.astype(object).copy()
    frame.loc[row, column] = value
    return _frame(frame)


def _edit_line(line_no: int, edit: Callable[[str], str]) -> bytes:
    lines = list(LINES)
    lines[line_no - 1] = edit(lines[line_no - 1])
    return _lines(lines)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("train.csv", CLEAN_TEXT)
    return buffer.getvalue()


HUGE = json.dumps(["word " * 600_000])  # a 3 MB cell: over the csv module's default field limit


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    line: int | None = None  # refused at this file line; None with accepted=True
    column: str | None = None  # ... naming this column (a name, or "#k" for a field beyond the header)
    accepted: bool = False
    labelled: bool = True
    same_as: Callable[[], pd.DataFrame] | None = None  # accepted input equal to this frame (default: CLEAN)

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted, equal to the clean file" if self.same_as is None else "accepted, cell kept whole"
        where = ", ".join(x for x in (self.line and f"line {self.line}", self.column and f"column {self.column}") if x)
        return f"refused, exit 2: {where or 'file named'}"


def _with_huge() -> pd.DataFrame:
    frame = CLEAN.copy()
    frame.loc[3, "response_b"] = HUGE
    return frame


CASES = [
    # accepted: the same battles as the clean file
    Case("trailing comma on every data row", lambda: _lines([LINES[0], *(x + "," for x in LINES[1:])]), accepted=True),
    Case("trailing comma on the header and every row", lambda: _lines([x + "," for x in LINES]), accepted=True),
    Case("CRLF line ends", lambda: _lines(LINES, "\r\n"), accepted=True),
    Case("UTF-8 byte-order mark", lambda: b"\xef\xbb\xbf" + _text(CLEAN_TEXT), accepted=True),
    Case("UTF-16 with BOM", lambda: CLEAN_TEXT.encode("utf-16"), accepted=True),
    Case(
        "blank lines between and after rows",
        lambda: _lines([LINES[0], "", *LINES[1:4], "", *LINES[4:], "", ""]),
        accepted=True,
    ),  # fmt: skip
    Case("gzip-compressed CSV", lambda: gzip.compress(_text(CLEAN_TEXT)), accepted=True),
    Case("semicolon-delimited", lambda: _frame(CLEAN, sep=";"), accepted=True),
    Case("tab-delimited", lambda: _frame(CLEAN, sep="\t"), accepted=True),
    Case("pandas index written as an unnamed first column", lambda: _text(CLEAN.to_csv(index=True)), accepted=True),
    Case("every cell quoted", lambda: _frame(CLEAN, quoting=csv.QUOTE_ALL), accepted=True),
    Case(
        "labels written as 0.0 / 1.0", lambda: _frame(CLEAN.astype({c: float for c in CLASS_COLUMNS})), accepted=True
    ),  # fmt: skip
    Case("columns in another order", lambda: _frame(CLEAN[CLEAN.columns[::-1]]), accepted=True),
    Case("extra unknown column", lambda: _frame(CLEAN.assign(note="x")), accepted=True),
    Case(
        "spaces around header names and ids",
        lambda: _lines([", ".join(LINES[0].split(",")), *(" " + x for x in LINES[1:])]),
        accepted=True,
    ),  # fmt: skip
    Case("huge cell (3 MB)", lambda: _frame(_with_huge()), accepted=True, same_as=_with_huge),
    Case("train file given as test (labels ignored)", lambda: _text(CLEAN_TEXT), accepted=True, labelled=False),
    # refused: one line naming file, line and column
    Case("stray comma: one row has an extra value", lambda: _edit_line(6, lambda x: x + ",oops"), 6, "#10"),
    Case("row with fields missing", lambda: _edit_line(7, lambda x: x.rsplit(",", 2)[0]), 7, "'winner_model_b'"),
    Case("unbalanced quote mid-file", lambda: _edit_line(5, lambda x: x.replace(",m1,", ',"m1,', 1)), 5, "'model_a'"),
    Case("unbalanced quote on the last row", lambda: _edit_line(13, lambda x: x[:-1] + '"0'), 13, "'winner_tie'"),
    Case("NUL byte in a cell", lambda: _set(2, "response_a", '["a\x00b"]'), 4, "'response_a'"),
    Case(
        "latin-1 bytes (not UTF-8)",
        lambda: _frame(CLEAN).replace(b"Question 1", "Questión 1".encode("latin-1"), 1),
        None,
        "'prompt'",
    ),  # fmt: skip  (line checked below: the first row whose prompt has "Question 1")
    Case("duplicate header names", lambda: _frame(CLEAN.rename(columns={"model_b": "model_a"})), 1, "'model_a'"),
    Case("empty file", lambda: b""),
    Case("only whitespace", lambda: b"\n \n\r\n"),
    Case("header only", lambda: _lines(LINES[:1]), 2),
    Case("missing id column", lambda: _frame(CLEAN.drop(columns=["id"])), 1, "'id'"),
    Case("empty id", lambda: _set(3, "id", ""), 5, "'id'"),
    Case("duplicate ids", lambda: _set(7, "id", CLEAN.loc[2, "id"]), 9, "'id'"),
    Case("non-integer id (prompt text in the id column)", lambda: _set(4, "id", "What is"), 6, "'id'"),
    Case(
        "labels not one-hot",
        lambda: _set(6, "winner_model_b", 1 - CLEAN.loc[6, "winner_model_b"]),
        8,
        "'winner_model_a'",
    ),  # fmt: skip
    Case("label missing (NaN)", lambda: _set(2, "winner_model_b", ""), 4, "'winner_model_b'"),
    Case("label 2.0", lambda: _set(5, "winner_tie", 2.0), 7, "'winner_tie'"),
    Case("label negative", lambda: _set(1, "winner_model_a", -1), 3, "'winner_model_a'"),
    Case("label 'nan' text", lambda: _set(0, "winner_tie", "nan"), 2, "'winner_tie'"),
    Case("JSON object instead of CSV", lambda: _text(json.dumps({"id": 1, "prompt": "x"})), 1),
    Case("JSON number instead of CSV", lambda: b"42\n", 1),
    Case("JSON list of records", lambda: _text(CLEAN.to_json(orient="records")), 1),
    Case("test file given as train", lambda: _frame(make_battles(12, seed=5, labelled=False)), 1, "'winner_model_a'"),
    Case("zip archive", _zip),
    Case("damaged gzip", lambda: gzip.compress(_text(CLEAN_TEXT))[:200]),
    Case(
        "text cells that are not JSON turns (another schema)",
        lambda: _frame(CLEAN.assign(prompt="plain text")),
        2,
        "'prompt'",
    ),  # fmt: skip
]


def _expected_line(case: Case) -> int | None:
    if case.name.startswith("latin-1"):
        first = next(i for i, p in enumerate(CLEAN["prompt"]) if "Question 1" in p)
        return first + 2
    return case.line


@pytest.fixture(scope="module")
def clean_battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "clean.csv"
    path.write_bytes(_text(CLEAN_TEXT))
    return {labelled: load_battles(path, labelled=labelled)[0] for labelled in (True, False)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_input_class(case: Case, tmp_path, clean_battles):
    path = tmp_path / "input.csv"
    path.write_bytes(case.make())
    if case.accepted:
        battles, report = load_battles(path, labelled=case.labelled)
        if case.same_as is None:
            expected = clean_battles[case.labelled]
        else:
            expected, _ = load_battles_frame(case.same_as(), "<frame>", case.labelled)
        pd.testing.assert_frame_equal(battles, expected)
        assert sum(report.invalid_json.values()) == 0  # nothing "repaired": read exactly as clean
        return
    with pytest.raises(DataError) as info:
        load_battles(path, labelled=case.labelled)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:"), message
    line = _expected_line(case)
    if line is not None:
        assert f"line {line}" in message and f"line {line}0" not in message, message
    if case.column is not None:
        assert f"column {case.column}" in message or case.column in message.split("columns", 1)[-1], message


def test_in_memory_frame_is_validated_like_a_file():
    battles, _ = load_battles_frame(CLEAN, name="<frame>", labelled=True)
    assert battles["id"].tolist() == [str(i) for i in CLEAN["id"]]
    bad = CLEAN.copy()
    bad.loc[7, "id"] = bad.loc[2, "id"]
    with pytest.raises(DataError, match=r"^<frame>: row 8, column 'id': duplicate id '1002' \(first seen in row 3\)"):
        load_battles_frame(bad, name="<frame>", labelled=True)


# --------------------------------------------------------------------------- through the command line

RUNNER = "import sys; from pipelines.runtime.errors import run_command; from pipelines import full_run; "
RUNNER += "sys.exit(run_command(full_run.main))"


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_cli_refuses_bad_train_with_one_line_and_exit_2(tmp_path, test_csv):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_edit_line(6, lambda x: x + ",oops"))
    args = ["--train", str(bad), "--test", str(test_csv), "--out", str(tmp_path / "run"), "--no-progress"]
    result = _run(args)
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-2000:]
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert errors == [f"error: {bad}: line 6, column #10 (after 'winner_tie'): 10 fields but the header has 9;"
                      " extra value 'oops'"]  # fmt: skip
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "submission.csv").exists()

    debug = _run([*args, "--debug"])
    assert debug.returncode not in (0, USER_ERROR_EXIT)
    assert "Traceback" in debug.stderr and "DataError" in debug.stderr


def test_cli_on_kaggle_without_competition_data_stops_and_lists_inputs(tmp_path, train_csv):
    root = tmp_path / "kaggle"
    other = root / "input" / "some-other-dataset"
    other.mkdir(parents=True)
    (other / "train.csv").write_bytes(train_csv.read_bytes())  # sorts first, has train.csv: must not be taken
    (other / "test.csv").write_bytes(train_csv.read_bytes())
    (root / "input" / "my-model").mkdir()
    result = _run(["--no-progress", "--out", str(tmp_path / "run")], env={"ARENA_PREF_KAGGLE_ROOT": str(root)})
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if x.startswith("error:"))
    assert "llm-classification-finetuning" in line and "some-other-dataset/ [test.csv, train.csv]" in line
    assert "my-model/ (empty)" in line
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the Markdown table


def render_markdown() -> str:
    rows = [
        "# Input classes",
        "",
        "Generated from `tests/test_bad_inputs.py` (`python -m tests.test_bad_inputs`); each row is one test case.",
        "Accepted inputs load to exactly the battles of the clean file; refused ones stop with one line",
        "`error: FILE: line L, column C: what` and exit code 2 (traceback only with `--debug`).",
        "",
        "| input class | outcome |",
        "|---|---|",
    ]
    for case in CASES:
        outcome = case.outcome
        if not case.accepted and case.line is None and _expected_line(case) is not None:
            outcome = outcome.replace("refused, exit 2: ", f"refused, exit 2: line {_expected_line(case)}, ")
        rows.append(f"| {case.name}{' (read as test)' if not case.labelled else ''} | {outcome} |")
    rows += [
        "| in-memory frame (`load_battles_frame`) with a duplicate id | refused: names the frame, row and column |",
        "| command line: bad train.csv | exit 2, one `error:` line, no traceback; `--debug` shows it |",
        "| Kaggle: `/kaggle/input` without the competition folder | exit 2, the folders found are listed |",
        "| every input of `full_run`, `tune` and `ablation` (train with its own `source` column, `--extra-train`,"
        " `--source` OOF/test files, `--test-labels`) with a trailing comma on every row, `;` or tab separated,"
        " UTF-16, gzip under a `.csv` name | accepted: the same sources, primary rows, features and labels as"
        " the clean files (`tests/test_input_paths.py`) |",
        "| `--source` file or `--test-labels` without the id + 3 class columns, or with a bad value |"
        " refused, exit 2: line L, column C, before any feature (`tests/test_user_errors.py`) |",
        "| parquet probability file | recognised by its content (`PAR1`), not its name; rows named in errors |",
    ]
    return "\n".join(rows) + "\n"


def test_input_classes_table_is_current():
    assert MD_PATH.read_text() == render_markdown(), "run: python -m tests.test_bad_inputs"


if __name__ == "__main__":
    MD_PATH.write_text(render_markdown())
    print(f"wrote {MD_PATH}")
