"""Convert external human-preference data into the Kaggle train.csv schema.

Why: the training and evaluation code only reads the Kaggle "LLM Classification
Finetuning" layout, so every outside source (Chatbot Arena dumps, Anthropic
hh-rlhf, PandaLM, LLMEval2, Auto-J) is mapped here, once, to exactly that schema,
with its own label rules and A/B order handled per source. Bad rows raise
``ConversionError`` naming file, line/row and field; no row is ever dropped.

    python -m pipelines.convert --format hh-rlhf a.jsonl.gz b.jsonl.gz --out train.csv
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import logging
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, TEXT_COLUMNS
from pipelines.data import clean_text

log = logging.getLogger(__name__)

COLUMNS = ["id", "model_a", "model_b", *TEXT_COLUMNS, *CLASS_COLUMNS]
EXTRA_COLUMNS = ["source", "source_id"]  # optional; consumers ignore them
WINNER_COLUMNS = list(CLASS_COLUMNS)
JSON_COLUMNS = list(TEXT_COLUMNS)
_ONE_HOT = {"a": (1, 0, 0), "b": (0, 1, 0), "tie": (0, 0, 1)}

# id = offset + running index over all rows of one convert() call (all files together).
# Arena CSVs (Kaggle layout) keep their own ids; other arena layouts use the offset.
ID_OFFSETS = {
    "arena": 5_000_000,
    "hh-rlhf": 1_000_000,
    "pandalm": 2_000_000,
    "llmeval2": 3_000_000,
    "autoj": 4_000_000,
}

PathLike = str | os.PathLike


class ConversionError(ValueError):
    """Input that cannot be converted; the message names the file, line/row and field."""


# --------------------------------------------------------------------------- helpers


def _clean(text: str) -> str:
    return clean_text(text)[0]


def _text(rec: dict, field: str, where: str, *, optional: bool = False) -> str:
    """A text field of a record; scalars (e.g. JSON ``true``) become their text, with a warning."""
    if field not in rec:
        if optional:
            return ""
        raise ConversionError(f"{where}: field {field!r} missing")
    value = rec[field]
    if isinstance(value, str):
        return _clean(value)
    if value is None and optional:
        return ""
    if isinstance(value, (bool, int, float)) and not (isinstance(value, float) and np.isnan(value)):
        log.warning("%s: field %r is %s %r, converted to text", where, field, type(value).__name__, value)
        return str(value)
    raise ConversionError(f"{where}: field {field!r} is {type(value).__name__}, expected text")


def _row(
    id_: int,
    prompt: Sequence[str],
    resp_a: Sequence[str],
    resp_b: Sequence[str],
    winner: str,
    *,
    model_a: str = "",
    model_b: str = "",
    source: str = "",
    source_id: object = "",
) -> dict:
    """One output row; the three turn lists are padded with "" to the same length."""
    n = max(len(prompt), len(resp_a), len(resp_b), 1)

    def dump(turns: Sequence[str]) -> str:
        turns = [_clean(t) for t in turns] + [""] * (n - len(turns))
        return json.dumps(turns, ensure_ascii=False)

    wa, wb, wt = _ONE_HOT[winner]
    return {
        "id": int(id_),
        "model_a": _clean(model_a),
        "model_b": _clean(model_b),
        "prompt": dump(prompt),
        "response_a": dump(resp_a),
        "response_b": dump(resp_b),
        "winner_model_a": wa,
        "winner_model_b": wb,
        "winner_tie": wt,
        "source": source,
        "source_id": str(source_id),
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)
    return df.astype({"id": "int64", **{c: "int64" for c in WINNER_COLUMNS}})


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


def _iter_records(path: Path) -> Iterator[tuple[str, dict]]:
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


def _nonempty(path: Path, n_before: int, n_after: int) -> None:
    if n_after == n_before:
        raise ConversionError(f"{path}: no rows")


def _paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise ConversionError("no input files given")
    for p in out:
        if not p.is_file():
            raise ConversionError(f"{p}: file not found")
    return out


# --------------------------------------------------------------------------- hh-rlhf

_HH_MARK = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def _hh_split(chosen: str, rejected: str, where: str) -> tuple[list[str], list[str], list[str]]:
    """(prompts, chosen replies, rejected replies) of one hh-rlhf pair.

    The two transcripts share every turn but the last assistant reply. The split point is
    the last "\\n\\nAssistant:" inside their common prefix; everything after it (even text
    that looks like further turns, which some sampled replies contain) is the reply.
    Consecutive markers of the same role are one turn (the marker stays in its text).
    """
    bounds: list[tuple[str, int, int]] = []
    for m in _HH_MARK.finditer(chosen):
        if not bounds or bounds[-1][0] != m.group(1):
            bounds.append((m.group(1), m.start(), m.end()))
    common = len(os.path.commonprefix([chosen, rejected]))
    last = [k for k, (role, _, end) in enumerate(bounds) if role == "Assistant" and end <= common]
    if not last:
        raise ConversionError(
            f"{where}: fields 'chosen' and 'rejected' share no '\\n\\nHuman: ...\\n\\nAssistant:' "
            "turns before they differ"
        )
    k = last[-1]
    if bounds[0][0] != "Human" or chosen[: bounds[0][1]].strip():
        raise ConversionError(f"{where}: field 'chosen' does not start with '\\n\\nHuman:'")
    texts = [
        chosen[end : (bounds[j + 1][1] if j + 1 < len(bounds) else len(chosen))].strip()
        for j, (_, _, end) in enumerate(bounds[:k])
    ]
    prompts = texts[0::2]
    shared = texts[1::2]
    start = bounds[k][2]
    return prompts, shared + [chosen[start:].strip()], shared + [rejected[start:].strip()]


def convert_hh_rlhf(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Anthropic hh-rlhf {chosen, rejected} JSONL(.gz); A/B order by a seeded shuffle (chosen always wins)."""
    parsed = []  # (prompts, chosen, rejected, source, source_id)
    odd = collections.Counter()
    for path in _paths(paths):
        before = len(parsed)
        for where, rec in _iter_records(path):
            chosen, rejected = _text(rec, "chosen", where), _text(rec, "rejected", where)
            prompts, ch, rj = _hh_split(chosen, rejected, where)
            odd["identical chosen/rejected"] += chosen == rejected
            odd["empty final reply"] += (not ch[-1]) or (not rj[-1])
            odd["final reply holding more 'Human:/Assistant:' turns"] += bool(
                re.search(r"\n\n(Human|Assistant):", ch[-1] + rj[-1])
            )
            folder = path.resolve().parent.name
            parsed.append((prompts, ch, rj, f"hh-rlhf/{folder}", f"{folder}/{path.name}:{where.rsplit(' ', 1)[-1]}"))
        _nonempty(path, before, len(parsed))
        log.info("hh-rlhf: %s: %d rows", path, len(parsed) - before)
    swap = np.random.default_rng(seed).integers(0, 2, size=len(parsed)).astype(bool)
    rows = []
    for i, ((prompts, ch, rj, source, source_id), b_is_chosen) in enumerate(zip(parsed, swap)):
        a, b, winner = (rj, ch, "b") if b_is_chosen else (ch, rj, "a")
        rows.append(_row(ID_OFFSETS["hh-rlhf"] + i, prompts, a, b, winner, source=source, source_id=source_id))
    _log_odd("hh-rlhf", odd)
    return _frame(rows)


# --------------------------------------------------------------------------- pandalm


def _split_cmp_key(key: str, where: str) -> tuple[str, str]:
    parts = key.split("_")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ConversionError(f"{where}: field 'cmp_key' {key!r} is not '<modelX>_<modelY>' with exactly one '_'")
    return parts[0].strip(), parts[1].strip()


def convert_pandalm(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """PandaLM testset-v1.json: majority of annotator1..3 (0 tie, 1 response1, 2 response2)."""
    del seed  # no shuffling: response1 -> A
    rows: list[dict] = []
    labels = {0: "tie", 1: "a", 2: "b"}
    odd = collections.Counter()
    for path in _paths(paths):
        before = len(rows)
        for where, rec in _iter_records(path):
            prompt = _text(rec, "instruction", where)
            extra = _text(rec, "input", where, optional=True)
            if extra.strip():
                prompt = f"{prompt}\n\n{extra}"
            r1, r2 = _text(rec, "response1", where), _text(rec, "response2", where)
            model_a, model_b = _split_cmp_key(_text(rec, "cmp_key", where), where)
            votes = []
            for field in ("annotator1", "annotator2", "annotator3"):
                if field not in rec:
                    raise ConversionError(f"{where}: field {field!r} missing")
                v = rec[field]
                if isinstance(v, bool) or v not in labels:
                    raise ConversionError(f"{where}: field {field!r} is {v!r}, expected 0, 1 or 2")
                votes.append(v)
            top, count = collections.Counter(votes).most_common(1)[0]
            if count < 2:
                raise ConversionError(f"{where}: fields 'annotator1..3' {votes} have no majority")
            odd["empty response"] += (not r1.strip()) or (not r2.strip())
            odd["identical responses"] += r1 == r2
            rows.append(
                _row(
                    ID_OFFSETS["pandalm"] + len(rows),
                    [prompt],
                    [r1],
                    [r2],
                    labels[top],
                    model_a=model_a,
                    model_b=model_b,
                    source="pandalm",
                    source_id=rec.get("idx", where),
                )
            )
        _nonempty(path, before, len(rows))
        log.info("pandalm: %s: %d rows", path, len(rows) - before)
    _log_odd("pandalm", odd)
    return _frame(rows)


# --------------------------------------------------------------------------- llmeval2

_LLMEVAL2_LABELS = {"model1": "a", "model2": "b", "tie": "tie"}
_MT_MARK = re.compile(r"(?:^|\n\n)(user|assistant): ")


def _mt_turns(text: str) -> tuple[list[str], list[str]] | None:
    """'user: ...\\n\\nassistant: ...' transcript -> (user turns, assistant turns), None if not one."""
    parts = _MT_MARK.split(text)
    if parts[0] != "" or len(parts) < 3:
        return None
    roles, texts = parts[1::2], parts[2::2]
    if len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
        return None
    return texts[0::2], texts[1::2]


def convert_llmeval2(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """LLMEval2 benchmark (.zip or JSON/JSONL): human model1/model2/TIE; source llmeval2/<dataset>.

    Its mt-bench rows have an empty query and the whole two-turn dialogue in each
    response ("user: ...\\n\\nassistant: ..."); where both sides parse into the same
    user turns they become real multi-turn rows, otherwise (truncated dialogues) they
    are kept as they are with prompt [""].
    """
    del seed  # no shuffling: response1 -> A
    rows: list[dict] = []
    odd = collections.Counter()
    for path in _paths(paths):
        before = len(rows)
        for where, rec in _iter_records(path):
            query = _text(rec, "query", where)
            r1, r2 = _text(rec, "response1", where), _text(rec, "response2", where)
            human = _text(rec, "human", where)
            label = _LLMEVAL2_LABELS.get(human.strip().lower())
            if label is None:
                raise ConversionError(f"{where}: field 'human' is {human!r}, expected model1, model2 or TIE")
            dataset = _text(rec, "dataset", where, optional=True).strip()
            prompt, a, b = [query], [r1], [r2]
            if not query.strip():
                ta, tb = _mt_turns(r1), _mt_turns(r2)
                if ta and tb and ta[0] == tb[0]:
                    prompt, a, b = ta[0], ta[1], tb[1]
                    odd["empty query, dialogue split into turns"] += 1
                else:
                    odd["empty query, kept as one flat turn"] += 1
            odd["empty response"] += (not r1.strip()) or (not r2.strip())
            odd["identical responses"] += r1 == r2
            rows.append(
                _row(
                    ID_OFFSETS["llmeval2"] + len(rows),
                    prompt,
                    a,
                    b,
                    label,
                    source=f"llmeval2/{dataset}" if dataset else "llmeval2",
                    source_id=where.rsplit(" ", 1)[-1],
                )
            )
        _nonempty(path, before, len(rows))
        log.info("llmeval2: %s: %d rows", path, len(rows) - before)
    _log_odd("llmeval2", odd)
    return _frame(rows)


# --------------------------------------------------------------------------- autoj

_AUTOJ_LABELS = {0: "a", 1: "b", 2: "tie"}


def convert_autoj(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Auto-J pairwise JSONL: label 0 = response 1, 1 = response 2, 2 = tie."""
    del seed  # no shuffling: "response 1" -> A
    rows: list[dict] = []
    odd = collections.Counter()
    for path in _paths(paths):
        before = len(rows)
        for where, rec in _iter_records(path):
            prompt = _text(rec, "prompt", where)
            r1, r2 = _text(rec, "response 1", where), _text(rec, "response 2", where)
            if "label" not in rec:
                raise ConversionError(f"{where}: field 'label' missing")
            raw = rec["label"]
            value = int(raw) if isinstance(raw, str) and raw.strip() in {"0", "1", "2"} else raw
            if isinstance(value, bool) or value not in _AUTOJ_LABELS:
                raise ConversionError(f"{where}: field 'label' is {raw!r}, expected 0, 1 or 2")
            odd["empty response"] += (not r1.strip()) or (not r2.strip())
            odd["identical responses"] += r1 == r2
            rows.append(
                _row(
                    ID_OFFSETS["autoj"] + len(rows),
                    [prompt],
                    [r1],
                    [r2],
                    _AUTOJ_LABELS[value],
                    source="autoj",
                    source_id=where.rsplit(" ", 1)[-1],
                )
            )
        _nonempty(path, before, len(rows))
        log.info("autoj: %s: %d rows", path, len(rows) - before)
    _log_odd("autoj", odd)
    return _frame(rows)


# --------------------------------------------------------------------------- arena

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
            raise ConversionError(f"{where}: field {field!r} is not a JSON list ({exc.msg})") from None
    if not isinstance(value, list):
        raise ConversionError(f"{where}: field {field!r} is not a JSON list of strings")
    out = []
    for turn in value:
        if turn is None:
            odd[f"null turn in {field} (-> '')"] += 1
            out.append("")
        elif isinstance(turn, str):
            out.append(turn)
        else:
            raise ConversionError(f"{where}: field {field!r} holds a {type(turn).__name__}, expected strings")
    return out


def _arena_kaggle_row(rec: dict, where: str, source: str, odd: collections.Counter) -> dict:
    """Layout (a): already the train.csv schema; validated and passed through with its id."""
    for field in COLUMNS:
        if field not in rec:
            raise ConversionError(f"{where}: field {field!r} missing")
    try:
        id_ = int(str(rec["id"]).strip())
    except ValueError:
        raise ConversionError(f"{where}: field 'id' is {rec['id']!r}, expected an integer") from None
    winners = []
    for field in WINNER_COLUMNS:
        v = str(rec[field]).strip()
        if v not in {"0", "1", "0.0", "1.0"}:
            raise ConversionError(f"{where}: field {field!r} is {rec[field]!r}, expected 0 or 1")
        winners.append(int(float(v)))
    if sum(winners) != 1:
        raise ConversionError(f"{where}: fields 'winner_model_a/b/tie' are {winners}, expected exactly one 1")
    turns = {f: _json_turns(rec[f], where, f, odd) for f in JSON_COLUMNS}
    models = []
    for field in ("model_a", "model_b"):
        v = rec[field]
        models.append("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    winner = ("a", "b", "tie")[winners.index(1)]
    return _row(
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
            raise ConversionError(f"{where}: field {field!r} is not a JSON list ({exc.msg})") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ConversionError(f"{where}: field {field!r} is not a non-empty list of messages")
    users: list[str] = []
    replies: list[str | None] = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise ConversionError(f"{where}: field {field!r} message {j} is not an object")
        role = str(msg.get("role", "")).lower()
        content = _text(msg, "content", f"{where}: {field}[{j}]")
        if role in ("user", "human"):
            users.append(content)
            replies.append(None)
        elif role in ("assistant", "gpt", "model"):
            if not users:
                users.append("")
                replies.append(None)
            replies[-1] = content if replies[-1] is None else f"{replies[-1]}\n\n{content}"
        else:
            raise ConversionError(f"{where}: field {field!r} message {j} has role {msg.get('role')!r}")
    return users, ["" if r is None else r for r in replies]


def _arena_conversation_row(rec: dict, where: str, id_: int) -> dict:
    """Layout (b): lmsys chatbot_arena_conversations (33k)."""
    for field in ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b"):
        if field not in rec:
            raise ConversionError(f"{where}: field {field!r} missing")
    winner = _ARENA_WINNERS.get(str(rec["winner"]).strip())
    if winner is None:
        raise ConversionError(f"{where}: field 'winner' is {rec['winner']!r}, expected one of {sorted(_ARENA_WINNERS)}")
    users_a, resp_a = _conversation(rec["conversation_a"], where, "conversation_a")
    users_b, resp_b = _conversation(rec["conversation_b"], where, "conversation_b")
    if users_a != users_b:
        raise ConversionError(f"{where}: fields 'conversation_a' and 'conversation_b' have different user turns")
    return _row(
        id_,
        users_a,
        resp_a,
        resp_b,
        winner,
        model_a=_text(rec, "model_a", where),
        model_b=_text(rec, "model_b", where),
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
        raise ConversionError(
            f"{where}: field 'body.messages[1].content' has no "
            "'Instruction: ... Response B: ...<|eot_id|>\\n\\nLabel:' block"
        )
    label_text = content[end + len(_BATCH_END) :].split("\n", 1)[0].strip()
    winner = _BATCH_LABELS.get(label_text)
    if winner is None:
        raise ConversionError(
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
        raise ConversionError(
            f"{where}: field 'body.messages[1].content' does not parse as 'Instruction:/Response A:/Response B:' turns"
        )
    return prompts, a, b, winner


def _arena_batch_row(rec: dict, where: str, id_: int) -> dict:
    """Layout (c): OpenAI batch request lines embedding one arena battle (king398)."""
    try:
        content = rec["body"]["messages"][1]["content"]
    except (KeyError, IndexError, TypeError):
        raise ConversionError(f"{where}: field 'body.messages[1].content' missing") from None
    if not isinstance(content, str):
        raise ConversionError(f"{where}: field 'body.messages[1].content' is not text")
    prompts, a, b, winner = _parse_batch_content(_clean(content), where)
    return _row(
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


def convert_arena(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Chatbot Arena data in one of three layouts, detected per file:
    (a) Kaggle/LMSYS arena-55k CSV (validated, passed through with its ids);
    (b) lmsys chatbot_arena_conversations (JSON/JSONL/parquet; question_id -> source_id);
    (c) OpenAI batch lines embedding a battle in body.messages[1].content (king398)."""
    del seed  # arena A/B order is already random
    rows: list[dict] = []
    running = 0
    odd = collections.Counter()
    for path in _paths(paths):
        before = len(rows)
        if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
            try:
                df = pd.read_csv(path, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
                raise ConversionError(f"{path}: cannot read CSV ({exc})") from None
            missing = [c for c in COLUMNS if c not in df.columns]
            if missing:
                raise ConversionError(f"{path}: not the Kaggle train.csv layout, column(s) {missing} missing")
            for i, rec in enumerate(df.to_dict("records"), 1):
                rows.append(_arena_kaggle_row(rec, f"{path} row {i}", "arena/kaggle-55k", odd))
        else:
            if path.suffix == ".parquet":
                try:
                    records = pd.read_parquet(path).to_dict("records")
                except Exception as exc:  # pyarrow missing or unreadable file
                    raise ConversionError(f"{path}: cannot read parquet ({exc})") from None
                items: Iterator[tuple[str, dict]] = ((f"{path} row {i}", r) for i, r in enumerate(records, 1))
            else:
                items = _iter_records(path)
            layout = None
            for where, rec in items:
                if layout is None:
                    layout = _arena_layout(rec)
                    if layout is None:
                        raise ConversionError(
                            f"{where}: unknown arena layout (fields {sorted(rec)[:8]}); expected "
                            "conversation_a/conversation_b, body.messages, or the train.csv columns"
                        )
                    log.info("arena: %s: layout %s", path, layout)
                if layout == "kaggle":
                    rows.append(_arena_kaggle_row(rec, where, "arena/kaggle-55k", odd))
                    continue
                id_ = ID_OFFSETS["arena"] + running
                running += 1
                if layout == "conversations":
                    rows.append(_arena_conversation_row(rec, where, id_))
                else:
                    rows.append(_arena_batch_row(rec, where, id_))
        _nonempty(path, before, len(rows))
        for row in rows[before:]:
            odd["identical responses"] += row["response_a"] == row["response_b"]
            odd["an empty response turn"] += any(
                not t.strip() for c in ("response_a", "response_b") for t in json.loads(row[c])
            )
        log.info("arena: %s: %d rows", path, len(rows) - before)
    _log_odd("arena", odd)
    return _frame(rows)


# --------------------------------------------------------------------------- entry points

CONVERTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "arena": convert_arena,
    "hh-rlhf": convert_hh_rlhf,
    "pandalm": convert_pandalm,
    "llmeval2": convert_llmeval2,
    "autoj": convert_autoj,
}


def _log_odd(fmt: str, odd: collections.Counter) -> None:
    for what, n in sorted(odd.items()):
        if n:
            log.warning("%s: %d row(s): %s (kept)", fmt, n, what)


def validate(df: pd.DataFrame) -> None:
    """Raise ConversionError unless df follows the train.csv schema (extra columns after the 9 are fine)."""
    if list(df.columns[: len(COLUMNS)]) != COLUMNS:
        raise ConversionError(f"output columns {list(df.columns)} do not start with {COLUMNS}")
    if df.empty:
        raise ConversionError("no rows")
    if not pd.api.types.is_integer_dtype(df["id"]):
        raise ConversionError(f"column 'id' has dtype {df['id'].dtype}, expected integers")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ConversionError(
            f"{len(dup)} duplicate id(s), e.g. {dup.iloc[0]} "
            f"(source {df.loc[dup.index[0], 'source'] if 'source' in df else '?'})"
        )
    win = df[WINNER_COLUMNS]
    if not all(pd.api.types.is_integer_dtype(win[c]) for c in WINNER_COLUMNS) or not win.isin([0, 1]).all().all():
        raise ConversionError("winner columns must be 0/1 integers")
    bad = win.sum(axis=1) != 1
    if bad.any():
        raise ConversionError(f"{int(bad.sum())} row(s) without exactly one winner, e.g. id {df['id'][bad].iloc[0]}")
    for col in ("model_a", "model_b", *JSON_COLUMNS):
        if df[col].isna().any():
            raise ConversionError(f"column {col!r} has missing values")
    for i, cells in enumerate(zip(*(df[c] for c in JSON_COLUMNS))):
        lens = set()
        for col, cell in zip(JSON_COLUMNS, cells):
            turns = json.loads(cell)
            if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                raise ConversionError(f"row {i} (id {df['id'].iloc[i]}): {col!r} is not a JSON list of strings")
            lens.add(len(turns))
        if len(lens) != 1:
            raise ConversionError(f"row {i} (id {df['id'].iloc[i]}): prompt/response turn counts differ")


def convert(format: str, paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Convert `paths` of one source format into one validated train.csv-schema DataFrame."""
    if format not in CONVERTERS:
        raise ValueError(f"unknown format {format!r}; choose from {sorted(CONVERTERS)}")
    df = CONVERTERS[format](_paths(paths), seed=seed)
    validate(df)
    return df


def label_counts(df: pd.DataFrame) -> dict[str, int]:
    return {c: int(df[c].sum()) for c in WINNER_COLUMNS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("--out", required=True, type=Path, help="output CSV (train.csv schema)")
    parser.add_argument("--seed", type=int, default=0, help="A/B shuffle seed (hh-rlhf)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        df = convert(args.format, args.inputs, seed=args.seed)
    except ConversionError as exc:
        log.error("%s", exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    counts = " ".join(f"{k}={v}" for k, v in label_counts(df).items())
    print(f"{args.format}: {len(df)} rows from {len(args.inputs)} file(s) -> {args.out} | {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
