"""Chatbot Arena dumps in their three layouts: Kaggle CSV/JSON, conversations, and batch prompts."""

from __future__ import annotations

import collections
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_NAMES
from pipelines.formats import schema
from pipelines.formats.reading import input_paths, iter_records, require_rows

log = logging.getLogger(__name__)


_ARENA_WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}
_BATCH_LABELS = {"A is better": "a", "B is better": "b", "Both are equal": "tie"}
_BATCH_TURN = re.compile(
    r"Instruction:\n(.*?)\n\nResponse A:\n(.*?)\n\nResponse B:\n(.*?)(?=\n\nInstruction:\n|\Z)", re.S
)
_BATCH_END = "<|eot_id|>\n\nLabel: "
_BATCH_HEADER = "<|start_header_id|>user<|end_header_id|>\n\n"


def _json_turns(value: object, where: str, field: str, odd: collections.Counter) -> list[str]:
    """A Kaggle JSON-list cell -> list of str (null turns become "")."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise schema.ConversionError(f"{where}: field {field!r} is not a JSON list ({exc.msg})") from None
    if not isinstance(value, list):
        raise schema.ConversionError(f"{where}: field {field!r} is not a JSON list of strings")
    out = []
    for turn in value:
        if turn is None:
            odd[f"null turn in {field} (-> '')"] += 1
            out.append("")
        elif isinstance(turn, str):
            out.append(turn)
        else:
            raise schema.ConversionError(f"{where}: field {field!r} holds a {type(turn).__name__}, expected strings")
    return out


def _arena_kaggle_row(rec: dict, where: str, source: str, odd: collections.Counter) -> dict:
    """Layout (a): already the train.csv schema; validated and passed through with its id."""
    for field in schema.COLUMNS:
        if field not in rec:
            raise schema.ConversionError(f"{where}: field {field!r} missing")
    try:
        id_ = int(str(rec["id"]).strip())
    except ValueError:
        raise schema.ConversionError(f"{where}: field 'id' is {rec['id']!r}, expected an integer") from None
    winners = []
    for field in schema.WINNER_COLUMNS:
        v = str(rec[field]).strip()
        if v not in {"0", "1", "0.0", "1.0"}:
            raise schema.ConversionError(f"{where}: field {field!r} is {rec[field]!r}, expected 0 or 1")
        winners.append(int(float(v)))
    if sum(winners) != 1:
        raise schema.ConversionError(f"{where}: fields 'winner_model_a/b/tie' are {winners}, expected exactly one 1")
    turns = {f: _json_turns(rec[f], where, f, odd) for f in schema.JSON_COLUMNS}
    models = []
    for field in ("model_a", "model_b"):
        v = rec[field]
        models.append("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    winner = CLASS_NAMES[winners.index(1)]
    return schema.make_row(
        id_,
        turns["prompt"],
        turns["response_a"],
        turns["response_b"],
        winner,
        model_a=models[0],
        model_b=models[1],
        source=source,
        source_id=id_,
    )


def _conversation(value: object, where: str, field: str) -> tuple[list[str], list[str]]:
    """[{role, content}, ...] -> (user turns, assistant turns); a user message opens a turn."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise schema.ConversionError(f"{where}: field {field!r} is not a JSON list ({exc.msg})") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise schema.ConversionError(f"{where}: field {field!r} is not a non-empty list of messages")
    users: list[str] = []
    replies: list[str | None] = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise schema.ConversionError(f"{where}: field {field!r} message {j} is not an object")
        role = str(msg.get("role", "")).lower()
        content = schema.text_field(msg, "content", f"{where}: {field}[{j}]")
        if role in ("user", "human"):
            users.append(content)
            replies.append(None)
        elif role in ("assistant", "gpt", "model"):
            if not users:
                users.append("")
                replies.append(None)
            replies[-1] = content if replies[-1] is None else f"{replies[-1]}\n\n{content}"
        else:
            raise schema.ConversionError(f"{where}: field {field!r} message {j} has role {msg.get('role')!r}")
    return users, ["" if r is None else r for r in replies]


def _arena_conversation_row(rec: dict, where: str, id_: int) -> dict:
    """Layout (b): lmsys chatbot_arena_conversations (33k)."""
    for field in ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b"):
        if field not in rec:
            raise schema.ConversionError(f"{where}: field {field!r} missing")
    winner = _ARENA_WINNERS.get(str(rec["winner"]).strip())
    if winner is None:
        raise schema.ConversionError(
            f"{where}: field 'winner' is {rec['winner']!r}, expected one of {sorted(_ARENA_WINNERS)}"
        )
    users_a, resp_a = _conversation(rec["conversation_a"], where, "conversation_a")
    users_b, resp_b = _conversation(rec["conversation_b"], where, "conversation_b")
    if users_a != users_b:
        raise schema.ConversionError(f"{where}: fields 'conversation_a' and 'conversation_b' have different user turns")
    return schema.make_row(
        id_,
        users_a,
        resp_a,
        resp_b,
        winner,
        model_a=schema.text_field(rec, "model_a", where),
        model_b=schema.text_field(rec, "model_b", where),
        source="arena/conversations-33k",
        source_id=rec["question_id"],
    )


def _parse_batch_content(content: str, where: str) -> tuple[list[str], list[str], list[str], str]:
    """'...Instruction:\\n<p>\\n\\nResponse A:\\n<a>\\n\\nResponse B:\\n<b>[\\n\\nInstruction:...]<|eot_id|>
    \\n\\nLabel: <label>' -> (prompts, a turns, b turns, winner)."""
    head = content.find(_BATCH_HEADER)
    start = head + len(_BATCH_HEADER) if head >= 0 else content.find("Instruction:\n")
    end = content.rfind(_BATCH_END)
    if start < 0 or end < start:
        raise schema.ConversionError(
            f"{where}: field 'body.messages[1].content' has no "
            "'Instruction: ... Response B: ...<|eot_id|>\\n\\nLabel:' block"
        )
    label_text = content[end + len(_BATCH_END) :].split("\n", 1)[0].strip()
    winner = _BATCH_LABELS.get(label_text)
    if winner is None:
        raise schema.ConversionError(
            f"{where}: field 'body.messages[1].content' has label {label_text!r}, "
            f"expected one of {sorted(_BATCH_LABELS)}"
        )
    body = content[start:end]
    prompts, a, b = [], [], []
    pos = 0
    for m in _BATCH_TURN.finditer(body):
        if m.start() != pos:
            break
        prompts.append(m.group(1))
        a.append(m.group(2))
        b.append(m.group(3))
        pos = m.end() + 2  # the "\n\n" before the next "Instruction:"
    if not prompts or pos - 2 != len(body):
        raise schema.ConversionError(
            f"{where}: field 'body.messages[1].content' does not parse as 'Instruction:/Response A:/Response B:' turns"
        )
    return prompts, a, b, winner


def _arena_batch_row(rec: dict, where: str, id_: int) -> dict:
    """Layout (c): OpenAI batch request lines embedding one arena battle (king398)."""
    try:
        content = rec["body"]["messages"][1]["content"]
    except (KeyError, IndexError, TypeError):
        raise schema.ConversionError(f"{where}: field 'body.messages[1].content' missing") from None
    if not isinstance(content, str):
        raise schema.ConversionError(f"{where}: field 'body.messages[1].content' is not text")
    prompts, a, b, winner = _parse_batch_content(schema.clean(content), where)
    return schema.make_row(
        id_,
        prompts,
        a,
        b,
        winner,
        source="arena/king398-batch",
        source_id=rec.get("custom_id", where.rsplit(" ", 1)[-1]),
    )


def _arena_layout(rec: dict) -> str | None:
    if "conversation_a" in rec:
        return "conversations"
    if "body" in rec and isinstance(rec["body"], dict) and "messages" in rec["body"]:
        return "batch"
    if {"prompt", "response_a", "response_b"} <= set(rec):
        return "kaggle"
    return None


def convert_arena(paths: schema.PathLike | Sequence[schema.PathLike], seed: int = 0) -> pd.DataFrame:
    """Chatbot Arena data in one of three layouts, detected per file:
    (a) Kaggle/LMSYS arena-55k CSV (validated, passed through with its ids);
    (b) lmsys chatbot_arena_conversations (JSON/JSONL/parquet; question_id -> source_id);
    (c) OpenAI batch lines embedding a battle in body.messages[1].content (king398)."""
    del seed  # arena A/B order is already random
    rows: list[dict] = []
    running = 0
    odd: collections.Counter[str] = collections.Counter()
    for path in input_paths(paths):
        before = len(rows)
        if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
            rows += _kaggle_csv_rows(path, odd)
        else:
            new, running = _record_rows(path, running, odd)
            rows += new
        require_rows(path, before, len(rows))
        for row in rows[before:]:
            odd["identical responses"] += row["response_a"] == row["response_b"]
            odd["an empty response turn"] += any(
                not t.strip() for c in ("response_a", "response_b") for t in json.loads(row[c])
            )
        log.info("arena: %s: %d rows", path, len(rows) - before)
    schema.log_odd("arena", odd)
    return schema.make_frame(rows)


def _kaggle_csv_rows(path: Path, odd: collections.Counter[str]) -> list[dict]:
    """Layout (a): a CSV in Kaggle's train.csv columns, validated row by row, its ids kept."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise schema.ConversionError(f"{path}: cannot read CSV ({exc})") from None
    missing = [c for c in schema.COLUMNS if c not in df.columns]
    if missing:
        raise schema.ConversionError(f"{path}: not the Kaggle train.csv layout, column(s) {missing} missing")
    return [
        _arena_kaggle_row(rec, f"{path} row {i}", "arena/kaggle-55k", odd)
        for i, rec in enumerate(df.to_dict("records"), 1)
    ]


def _record_rows(path: Path, running: int, odd: collections.Counter[str]) -> tuple[list[dict], int]:
    """A JSON / JSONL / parquet file, its layout told by its first record; the rows and the next running
    number (layouts (b) and (c) number their rows from ``running``, across files)."""
    if path.suffix == ".parquet":
        try:
            records = pd.read_parquet(path).to_dict("records")
        except Exception as exc:  # pyarrow missing or unreadable file
            raise schema.ConversionError(f"{path}: cannot read parquet ({exc})") from None
        items: Iterator[tuple[str, dict]] = ((f"{path} row {i}", r) for i, r in enumerate(records, 1))
    else:
        items = iter_records(path)
    rows: list[dict] = []
    layout = None
    for where, rec in items:
        if layout is None:
            layout = _arena_layout(rec)
            if layout is None:
                raise schema.ConversionError(
                    f"{where}: unknown arena layout (fields {sorted(map(str, rec))[:8]}); expected "
                    "conversation_a/conversation_b, body.messages, or the train.csv columns"
                )
            log.info("arena: %s: layout %s", path, layout)
        if layout == "kaggle":
            rows.append(_arena_kaggle_row(rec, where, "arena/kaggle-55k", odd))
            continue
        id_ = schema.ID_OFFSETS["arena"] + running
        running += 1
        if layout == "conversations":
            rows.append(_arena_conversation_row(rec, where, id_))
        else:
            rows.append(_arena_batch_row(rec, where, id_))
    return rows, running
