"""Tests for pipelines.convert: small fixtures per format, errors, and slices of the real shared data."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipelines import convert as cv
from pipelines.formats import COLUMNS, ConversionError, convert

SLICES = Path(__file__).resolve().parent / "fixtures" / "shared_slices"


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)  # ASCII escapes, as lone surrogates appear in real JSON
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def turns(df: pd.DataFrame, i: int) -> tuple[list, list, list]:
    r = df.iloc[i]
    return json.loads(r.prompt), json.loads(r.response_a), json.loads(r.response_b)


def winner(df: pd.DataFrame, i: int) -> str:
    r = df.iloc[i]
    return ("a", "b", "tie")[[r.winner_model_a, r.winner_model_b, r.winner_tie].index(1)]


def check_schema(df: pd.DataFrame) -> None:
    assert list(df.columns[:9]) == COLUMNS
    assert "source" in df.columns
    assert df["id"].is_unique
    assert (df[["winner_model_a", "winner_model_b", "winner_tie"]].sum(axis=1) == 1).all()
    for i in range(len(df)):
        p, a, b = turns(df, i)
        assert len(p) == len(a) == len(b) >= 1
        assert all(isinstance(t, str) for t in p + a + b)


def hh(chosen_last: str, rejected_last: str, context: str = "\n\nHuman: hi") -> dict:
    return {"chosen": f"{context}\n\nAssistant: {chosen_last}", "rejected": f"{context}\n\nAssistant: {rejected_last}"}


# --------------------------------------------------------------------------- hh-rlhf


def test_hh_rlhf_multi_turn_split(tmp_path):
    ctx = "\n\nHuman: first q\n\nAssistant: first answer\n\nHuman: second q"
    rows = [
        hh("good", "bad"),
        hh("good two", "bad two", ctx),
        # a sampled reply that invents further turns stays one reply
        hh("short", "long\n\nHuman: fake\n\nAssistant: more", ctx),
    ]
    folder = tmp_path / "helpful-base"
    folder.mkdir()
    df = convert("hh-rlhf", [write_jsonl(folder / "test.jsonl.gz", rows, gz=True)], seed=3)
    check_schema(df)
    assert df["source"].tolist() == ["hh-rlhf/helpful-base"] * 3
    assert df["id"].tolist() == [1_000_000, 1_000_001, 1_000_002]
    assert set(df["model_a"]) == {""} and set(df["model_b"]) == {""}
    expected = [
        (["hi"], "good", "bad"),
        (["first q", "second q"], "good two", "bad two"),
        (["first q", "second q"], "short", "long\n\nHuman: fake\n\nAssistant: more"),
    ]
    for i, (prompt, good, bad) in enumerate(expected):
        p, a, b = turns(df, i)
        assert p == prompt
        win, lose = (a, b) if winner(df, i) == "a" else (b, a)
        assert win[-1] == good and lose[-1] == bad
        assert win[:-1] == lose[:-1] == (["first answer"] if len(p) == 2 else [])


def test_hh_rlhf_shuffle_deterministic_and_balanced(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [hh(f"good {i}", f"bad {i}") for i in range(400)])
    d0, d0b, d1 = (convert("hh-rlhf", [path], seed=s) for s in (0, 0, 1))
    pd.testing.assert_frame_equal(d0, d0b)
    assert not d0["winner_model_a"].equals(d1["winner_model_a"])
    assert d0["winner_tie"].sum() == 0
    assert 0.4 < d0["winner_model_a"].mean() < 0.6
    # the chosen text is always the winner
    for i in range(len(d0)):
        _, a, b = turns(d0, i)
        assert (a if winner(d0, i) == "a" else b)[-1].startswith("good")


def test_ids_unique_across_files(tmp_path):
    paths = []
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        paths.append(write_jsonl(tmp_path / name / "test.jsonl", [hh("g", "b"), hh("g2", "b2")]))
    df = convert("hh-rlhf", paths)
    assert df["id"].tolist() == [1_000_000 + i for i in range(4)]
    assert df["source"].tolist() == ["hh-rlhf/x"] * 2 + ["hh-rlhf/y"] * 2
    assert df["source_id"].is_unique
    rec = {"query": "q", "response1": "r1", "response2": "r2", "human": "TIE", "dataset": "shp"}
    l1, l2 = write_jsonl(tmp_path / "l1.jsonl", [rec] * 3), write_jsonl(tmp_path / "l2.jsonl", [rec] * 2)
    assert convert("llmeval2", [l1, l2])["id"].tolist() == [3_000_000 + i for i in range(5)]


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps(hh("g", "b")) + "\n\n" + '{"chosen": "oops\n', encoding="utf-8")
    with pytest.raises(ConversionError, match=r"hh\.jsonl line 3: invalid JSON"):
        convert("hh-rlhf", [path])


def test_missing_field_names_file_line_and_field(tmp_path):
    rows = [hh("g", "b"), hh("g", "b"), {"rejected": "\n\nHuman: x\n\nAssistant: y"}]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(ConversionError, match=r"hh\.jsonl line 3: field 'chosen' missing"):
        convert("hh-rlhf", [path])


def test_hh_rlhf_unsplittable_pair_raises(tmp_path):
    path = write_jsonl(
        tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: b"}]
    )
    with pytest.raises(ConversionError, match=r"hh\.jsonl line 1: fields 'chosen' and 'rejected'"):
        convert("hh-rlhf", [path])


def test_empty_file_and_missing_file_raise(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConversionError, match="empty.jsonl: no rows"):
        convert("hh-rlhf", [empty])
    with pytest.raises(ConversionError, match="nope.jsonl: file not found"):
        convert("hh-rlhf", [tmp_path / "nope.jsonl"])
    with pytest.raises(ValueError, match="unknown format"):
        convert("nope", [empty])


# --------------------------------------------------------------------------- pandalm


def pandalm_rec(idx, votes, cmp_key="llama-7b_cerebras-gpt-6.7B", inp="", r1="one", r2="two"):
    return {
        "idx": idx,
        "motivation_app": "x",
        "cmp_key": cmp_key,
        "instruction": "Do it.",
        "input": inp,
        "response1": r1,
        "response2": r2,
        "annotator1": votes[0],
        "annotator2": votes[1],
        "annotator3": votes[2],
    }


def test_pandalm_majority_models_and_prompt(tmp_path):
    recs = [pandalm_rec(0, (1, 1, 2), inp="the input"), pandalm_rec(1, (2, 0, 2)), pandalm_rec(2, (0, 0, 1), r1=True)]
    path = tmp_path / "testset-v1.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    df = convert("pandalm", [path])
    check_schema(df)
    assert [winner(df, i) for i in range(3)] == ["a", "b", "tie"]
    assert df["model_a"].tolist() == ["llama-7b"] * 3
    assert df["model_b"].tolist() == ["cerebras-gpt-6.7B"] * 3
    assert turns(df, 0) == (["Do it.\n\nthe input"], ["one"], ["two"])
    assert turns(df, 1)[0] == ["Do it."]
    assert turns(df, 2)[1] == ["True"]  # JSON true in the source becomes text
    assert df["id"].tolist() == [2_000_000, 2_000_001, 2_000_002]
    assert set(df["source"]) == {"pandalm"}


@pytest.mark.parametrize("key", ["a_b_c", "nounderscore", "_b"])
def test_pandalm_bad_cmp_key(tmp_path, key):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([pandalm_rec(0, (1, 1, 1)), pandalm_rec(1, (1, 1, 1), cmp_key=key)]))
    with pytest.raises(ConversionError, match=r"p\.json row 2: field 'cmp_key'"):
        convert("pandalm", [path])


def test_pandalm_no_majority_raises(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([pandalm_rec(0, (0, 1, 2))]))
    with pytest.raises(ConversionError, match=r"p\.json row 1: .*no majority"):
        convert("pandalm", [path])


# --------------------------------------------------------------------------- llmeval2


def test_llmeval2_zip_labels_source_and_mt_bench(tmp_path):
    recs = [
        {"query": "q1", "response1": "a1", "response2": "b1", "human": "model1", "dataset": "shp"},
        {"query": "q2", "response1": "a2", "response2": "b2", "human": "model2", "dataset": "webgpt"},
        {"query": "q3", "response1": "a3", "response2": "b3", "human": "TIE", "dataset": "shp"},
        {
            "query": "",
            "human": "model2",
            "dataset": "mt-bench",
            "response1": "user: u1\n\nassistant: x1\n\nuser: u2\n\nassistant: x2",
            "response2": "user: u1\n\nassistant: y1\n\nuser: u2\n\nassistant: y2",
        },
        {
            "query": "",
            "human": "TIE",
            "dataset": "mt-bench",  # truncated dialogue: kept flat
            "response1": "user: u1\n\nassistant: x1",
            "response2": "cut off code",
        },
    ]
    path = tmp_path / "LLMEval2_benchmark.json.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("LLMEval2_benchmark.json", "".join(json.dumps(r) + "\n" for r in recs))
        zf.writestr("__MACOSX/._LLMEval2_benchmark.json", "junk")
    df = convert("llmeval2", [path])
    check_schema(df)
    assert [winner(df, i) for i in range(5)] == ["a", "b", "tie", "b", "tie"]
    assert df["source"].tolist() == [
        "llmeval2/shp",
        "llmeval2/webgpt",
        "llmeval2/shp",
        "llmeval2/mt-bench",
        "llmeval2/mt-bench",
    ]
    assert turns(df, 0) == (["q1"], ["a1"], ["b1"])
    assert turns(df, 3) == (["u1", "u2"], ["x1", "x2"], ["y1", "y2"])
    assert turns(df, 4) == ([""], ["user: u1\n\nassistant: x1"], ["cut off code"])
    # unzipped JSON array works too
    arr = tmp_path / "llmeval2.json"
    arr.write_text(json.dumps(recs[:3]))
    assert convert("llmeval2", [arr])["winner_tie"].tolist() == [0, 0, 1]


def test_llmeval2_bad_label(tmp_path):
    path = write_jsonl(
        tmp_path / "l.jsonl", [{"query": "q", "response1": "a", "response2": "b", "human": "model3", "dataset": "x"}]
    )
    with pytest.raises(ConversionError, match=r"l\.jsonl line 1: field 'human'"):
        convert("llmeval2", [path])


# --------------------------------------------------------------------------- autoj


def test_autoj(tmp_path):
    recs = [
        {"scenario": "code", "label": lab, "prompt": f"p{lab}", "response 1": f"r1-{lab}", "response 2": f"r2-{lab}"}
        for lab in (0, 1, 2)
    ]
    df = convert("autoj", [write_jsonl(tmp_path / "autoj.jsonl", recs)])
    check_schema(df)
    assert [winner(df, i) for i in range(3)] == ["a", "b", "tie"]
    assert turns(df, 1) == (["p1"], ["r1-1"], ["r2-1"])
    assert df["id"].tolist() == [4_000_000, 4_000_001, 4_000_002]
    bad = write_jsonl(tmp_path / "bad.jsonl", recs[:1] + [{**recs[0], "label": 5}])
    with pytest.raises(ConversionError, match=r"bad\.jsonl line 2: field 'label'"):
        convert("autoj", [bad])


# --------------------------------------------------------------------------- arena


def conv33k(qid, winner_, turns_a, turns_b, users=("hello",)):
    def conv(replies):
        out = []
        for u, r in zip(users, replies):
            out += [{"role": "user", "content": u}, {"role": "assistant", "content": r}]
        return out

    return {
        "question_id": qid,
        "model_a": "vicuna-13b",
        "model_b": "gpt-4",
        "winner": winner_,
        "judge": "arena_user_1",
        "conversation_a": conv(turns_a),
        "conversation_b": conv(turns_b),
        "turn": len(users),
        "anony": True,
        "language": "English",
    }


ARENA_33K = [
    conv33k("q1", "model_a", ["a1"], ["b1"]),
    conv33k("q2", "model_b", ["a1", "a2"], ["b1", "b2"], users=("u1", "u2")),
    conv33k("q3", "tie", ["a"], ["b"]),
    conv33k("q4", "tie (bothbad)", ["a"], ["b"]),
]


def test_arena_33k_json_jsonl_parquet(tmp_path):
    arr = tmp_path / "arena.json"
    arr.write_text(json.dumps(ARENA_33K))
    jl = write_jsonl(tmp_path / "arena.jsonl", ARENA_33K[:2])
    df = convert("arena", [arr, jl])
    check_schema(df)
    assert [winner(df, i) for i in range(4)] == ["a", "b", "tie", "tie"]
    assert turns(df, 1) == (["u1", "u2"], ["a1", "a2"], ["b1", "b2"])
    assert df["source_id"].tolist() == ["q1", "q2", "q3", "q4", "q1", "q2"]
    assert df["id"].is_unique and len(df) == 6
    assert df["model_a"].iloc[0] == "vicuna-13b" and df["model_b"].iloc[0] == "gpt-4"
    pytest.importorskip("pyarrow")
    pq = tmp_path / "arena.parquet"
    pd.DataFrame(ARENA_33K).to_parquet(pq)
    dq = convert("arena", [pq])
    assert turns(dq, 1) == (["u1", "u2"], ["a1", "a2"], ["b1", "b2"])
    assert [winner(dq, i) for i in range(4)] == ["a", "b", "tie", "tie"]


def test_arena_33k_errors(tmp_path):
    bad_winner = write_jsonl(tmp_path / "w.jsonl", [ARENA_33K[0], {**ARENA_33K[0], "winner": "both"}])
    with pytest.raises(ConversionError, match=r"w\.jsonl line 2: field 'winner'"):
        convert("arena", [bad_winner])
    other_user = conv33k("q9", "tie", ["a"], ["b"])
    other_user["conversation_b"][0]["content"] = "different"
    with pytest.raises(ConversionError, match=r"u\.jsonl line 1: fields 'conversation_a' and 'conversation_b'"):
        convert("arena", [write_jsonl(tmp_path / "u.jsonl", [other_user])])
    with pytest.raises(ConversionError, match=r"x\.jsonl line 1: unknown arena layout"):
        convert("arena", [write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}])])


def kaggle_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def kaggle_row(id_, win, prompt=("hi",), a=("A",), b=("B",)):
    return {
        "id": id_,
        "model_a": "m1",
        "model_b": "m2",
        "prompt": json.dumps(list(prompt)),
        "response_a": json.dumps(list(a)),
        "response_b": json.dumps(list(b)),
        "winner_model_a": int(win == "a"),
        "winner_model_b": int(win == "b"),
        "winner_tie": int(win == "tie"),
    }


def test_arena_55k_csv_pass_through(tmp_path):
    rows = [
        kaggle_row(30192, "a", prompt=["p1", "p2"], a=["x1", "x2"], b=["y1", None]),
        kaggle_row(53567, "b"),
        kaggle_row(4294947231, "tie", a=["caf\u00e9 \ud83d\ude00"]),
    ]
    df = convert("arena", [kaggle_csv(tmp_path / "train.csv", rows)])
    check_schema(df)
    assert df["id"].tolist() == [30192, 53567, 4294947231]
    assert [winner(df, i) for i in range(3)] == ["a", "b", "tie"]
    assert turns(df, 0) == (["p1", "p2"], ["x1", "x2"], ["y1", ""])  # null turn -> ""
    assert turns(df, 2)[1] == ["caf\u00e9 \U0001f600"]
    assert set(df["source"]) == {"arena/kaggle-55k"}
    with pytest.raises(ConversionError, match="duplicate id"):
        convert("arena", [tmp_path / "train.csv", tmp_path / "train.csv"])


def test_arena_55k_csv_errors(tmp_path):
    two = kaggle_row(2, "a")
    two["winner_model_b"] = 1
    with pytest.raises(ConversionError, match=r"bad\.csv row 2: fields 'winner_model_a/b/tie'"):
        convert("arena", [kaggle_csv(tmp_path / "bad.csv", [kaggle_row(1, "a"), two])])
    notjson = kaggle_row(3, "a")
    notjson["response_b"] = "not json"
    with pytest.raises(ConversionError, match=r"nj\.csv row 1: field 'response_b'"):
        convert("arena", [kaggle_csv(tmp_path / "nj.csv", [notjson])])
    test_csv = tmp_path / "test.csv"
    pd.DataFrame([{"id": 1, "prompt": "[]", "response_a": "[]", "response_b": "[]"}]).to_csv(test_csv, index=False)
    with pytest.raises(ConversionError, match=r"test\.csv: not the Kaggle train\.csv layout"):
        convert("arena", [test_csv])


def batch_line(i, blocks, label):
    body = "\n\n".join(f"Instruction:\n{p}\n\nResponse A:\n{a}\n\nResponse B:\n{b}" for p, a, b in blocks)
    content = (
        "\nParaphrase the following conversation.\n<|begin_of_text|><|start_header_id|>user"
        f"<|end_header_id|>\n\n{body}<|eot_id|>\n\nLabel: {label}\n\nGuidelines for paraphrasing:\n\n1. x"
    )
    return {
        "custom_id": f"request-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": content}],
        },
    }


def test_arena_batch_layout(tmp_path):
    lines = [
        batch_line(0, [("Say hi\n\n", "Hi!\n\nHow are you?", "Hello!")], "B is better"),
        batch_line(1, [("q1", "a1", "b1"), ("q2", "a2", "b2\ncode")], "A is better"),
        batch_line(2, [("q", "same", "same")], "Both are equal"),
    ]
    df = convert("arena", [write_jsonl(tmp_path / "batch_input.jsonl", lines)])
    check_schema(df)
    assert [winner(df, i) for i in range(3)] == ["b", "a", "tie"]
    assert turns(df, 0) == (["Say hi\n\n"], ["Hi!\n\nHow are you?"], ["Hello!"])
    assert turns(df, 1) == (["q1", "q2"], ["a1", "a2"], ["b1", "b2\ncode"])
    assert df["source_id"].tolist() == ["request-0", "request-1", "request-2"]
    assert df["id"].tolist() == [5_000_000, 5_000_001, 5_000_002]
    bad = batch_line(3, [("q", "a", "b")], "Maybe")
    with pytest.raises(ConversionError, match=r"b2\.jsonl line 2: .*label 'Maybe'"):
        convert("arena", [write_jsonl(tmp_path / "b2.jsonl", [lines[0], bad])])


# --------------------------------------------------------------------------- CLI, encoding


def test_main_writes_csv_and_round_trips(tmp_path, capsys):
    src = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            hh("caf\u00e9 \ud800 lone", 'b,"quoted"\nnewline'),
            hh("x", "y", "\n\nHuman: 1\n\nAssistant: 2\n\nHuman: 3"),
        ],
    )
    out = tmp_path / "sub" / "train.csv"
    assert cv.main(["--format", "hh-rlhf", str(src), "--out", str(out), "--seed", "7"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("hh-rlhf: 2 rows") and "winner_tie=0" in line
    back = pd.read_csv(out, keep_default_na=False)
    assert list(back.columns) == COLUMNS + ["source", "source_id"]
    direct = convert("hh-rlhf", [src], seed=7)
    for col in ("prompt", "response_a", "response_b"):
        assert [json.loads(s) for s in back[col]] == [json.loads(s) for s in direct[col]]
    replies = json.loads(back["response_a"][0]) + json.loads(back["response_b"][0])
    assert "caf\u00e9 \ufffd lone" in replies and 'b,"quoted"\nnewline' in replies
    assert back["model_a"].tolist() == ["", ""]


def test_main_reports_error(tmp_path, caplog):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"chosen": "x"}])
    assert cv.main(["--format", "hh-rlhf", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "bad.jsonl line 1: field 'rejected' missing" in caplog.text
    assert not (tmp_path / "o.csv").exists()


# --------------------------------------------------------------------------- real data


def test_real_format_slices():
    """Real records of the shared data (``tests/fixtures/shared_slices``, cut by its ``cut.py``): every
    record converts, with the labels and sources the raw fields give."""
    hh_files = sorted(SLICES.glob("hh-rlhf/*/test.jsonl.gz"))
    assert len(hh_files) == 4
    hh_lines = {f.parent.name: gzip.decompress(f.read_bytes()).decode("utf-8").splitlines() for f in hh_files}
    hh_df = convert("hh-rlhf", hh_files)
    assert hh_df["source"].value_counts().to_dict() == {f"hh-rlhf/{k}": len(v) for k, v in hh_lines.items()}
    assert hh_df["winner_tie"].sum() == 0  # chosen / rejected: never a tie

    pandalm_raw = json.loads((SLICES / "pandalm" / "testset-v1.json").read_text())
    pandalm = convert("pandalm", [SLICES / "pandalm" / "testset-v1.json"])
    assert len(pandalm) == len(pandalm_raw)
    expected = {"winner_model_a": 0, "winner_model_b": 0, "winner_tie": 0}
    for rec in pandalm_raw:  # the majority of the three annotators: 0 tie, 1 response1, 2 response2
        votes = [rec[f"annotator{i}"] for i in (1, 2, 3)]
        majority = max(set(votes), key=votes.count)
        expected[("winner_tie", "winner_model_a", "winner_model_b")[majority]] += 1
    assert cv.label_counts(pandalm) == expected

    with zipfile.ZipFile(SLICES / "llmeval2" / "LLMEval2_benchmark.json.zip") as zf:
        raw = [json.loads(line) for line in zf.read("LLMEval2_benchmark.json").decode("utf-8").splitlines()]
    llm = convert("llmeval2", [SLICES / "llmeval2" / "LLMEval2_benchmark.json.zip"])
    assert len(llm) == len(raw)
    humans = pd.Series([r["human"].strip().lower() for r in raw]).value_counts()
    assert cv.label_counts(llm) == {
        "winner_model_a": int(humans.get("model1", 0)),
        "winner_model_b": int(humans.get("model2", 0)),
        "winner_tie": int(humans.get("tie", 0)),
    }
    datasets = pd.Series([f"llmeval2/{r['dataset']}" for r in raw]).value_counts().to_dict()
    assert llm["source"].value_counts().to_dict() == datasets and len(datasets) > 1
    mt = llm[llm["source"] == "llmeval2/mt-bench"]
    assert len(mt) and any(len(json.loads(p)) == 2 for p in mt["prompt"])  # dialogues split into two turns

    ids = pd.concat([hh_df["id"], pandalm["id"], llm["id"]])
    assert ids.is_unique
