"""Encoder code paths on tiny offline models (random weights, fixture-trained tokenizers)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arena_schema import CLASS_COLUMNS, swap_proba
from encoders.classifier import TransformerClassifier, pad_batch
from encoders.cross_fit import cross_fit_encoder
from encoders.inputs import BattleEncoder, allocate_budget, keep_latest_turns, length_sorted_batches
from encoders.model import load_classifier, load_tokenizer, load_trained_classifier, save_classifier
from encoders.settings import EncoderConfig
from pipelines.data.battles import load_battles, swap_battles
from tests.conftest import make_battles
from tests.tiny_models import tiny_encoder_config

FAST_STACKER = ["--num-boost-round", "60", "--early-stopping-rounds", "10", "--num-threads", "1"]


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "train.csv"
    make_battles(40, seed=5).to_csv(path, index=False)
    return load_battles(path)[0]


# --- token budget --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(0, 2000), min_size=3, max_size=3), total=st.integers(3, 1024))
def test_budget_properties(lengths, total):
    shares = [0.2, 0.4, 0.4]
    alloc = allocate_budget(lengths, shares, total)
    assert sum(alloc) <= total
    assert all(0 <= a <= n for a, n in zip(alloc, lengths))
    assert all(a > 0 for a, n in zip(alloc, lengths) if n > 0)  # no part with text is cut away entirely
    if sum(lengths) <= total:
        assert alloc == lengths  # everything fits: nothing cut
    else:
        assert sum(alloc) == total  # unused shares pass on: the budget is used up
    for a, n, s in zip(alloc, lengths, shares):
        assert a >= min(n, int(s * total))  # each part gets at least its share (or all it needs)


def test_keep_latest_turns():
    turns = [[1] * 5, [2] * 5, [3] * 5]
    assert keep_latest_turns(turns, 100, [0]) == [1] * 5 + [0] + [2] * 5 + [0] + [3] * 5
    assert keep_latest_turns(turns, 11, [0]) == [2] * 5 + [0] + [3] * 5  # oldest turn dropped first
    assert keep_latest_turns(turns, 9, [0]) == [2] * 3 + [0] + [3] * 5  # older turn keeps its end
    assert keep_latest_turns(turns, 3, [0]) == [3] * 3  # the latest turn keeps its start


def _response_b_tokens(ids: list[int], encoder: BattleEncoder) -> list[int]:
    marker = encoder._markers[2]
    for i in range(len(ids) - len(marker) + 1):
        if ids[i : i + len(marker)] == marker:
            return ids[i + len(marker) : len(ids) - len(encoder._suffix)]
    raise AssertionError("response B marker missing")


@pytest.mark.parametrize("model", ["tiny_distilbert", "tiny_llama"])
def test_response_b_is_never_cut_away(model, request):
    """At 256 tokens the naive concatenation loses B on long rows; the budget never does."""
    tok = load_tokenizer(request.getfixturevalue(model))
    encoder = BattleEncoder(tok, max_length=256)
    long = "the model answer explains python code data table " * 80
    naive_lost = 0
    for prompt_len in (1, 50, 400):
        for a_len in (1, 80, 400):
            prompt, a, b = ["question " * prompt_len], [long[: a_len * 8]], ["clear detail step " * 100]
            ids = encoder.encode(prompt, a, b)
            assert len(ids) <= 256
            assert len(_response_b_tokens(ids, encoder)) > 0
            # the naive baseline: the same pieces concatenated, then cut at 256 tokens
            pieces = [
                encoder._prefix,
                encoder._markers[0],
                *encoder._turn_ids(prompt),
                encoder._markers[1],
                *encoder._turn_ids(a),
                encoder._markers[2],
            ]
            naive_lost += sum(map(len, pieces)) >= 256 - 1
    assert naive_lost > 0  # the baseline really does lose B here, so the check above means something


def test_length_sorted_batches_cover_all_rows():
    lengths = np.array([5, 50, 7, 30, 31, 2])
    batches = length_sorted_batches(lengths, 4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert lengths[batches[0]].min() >= lengths[batches[1]].max()


def test_dynamic_padding_pads_to_batch_max():
    batch = pad_batch([[1, 2, 3], [4]], pad_id=0, labels=[0, 2])
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [0, 2]


# --- models --------------------------------------------------------------------------------


def _config(path: Path, **kw) -> EncoderConfig:
    return tiny_encoder_config(path, **{"eval_batch_size": 16, "max_steps": 4, **kw})


@pytest.mark.parametrize("model", ["tiny_distilbert", "tiny_llama", "tiny_deberta"])
def test_classifier_probabilities_are_valid_and_swap_symmetric(model, request, battles):
    clf = TransformerClassifier(_config(request.getfixturevalue(model)), progress=False)
    clf.fit(battles, battles["label"].to_numpy())
    assert clf.steps_ == 4
    p = clf.predict_proba(battles)
    assert p.shape == (len(battles), 3) and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(clf.predict_proba(swap_battles(battles)), swap_proba(p), atol=1e-12)


@pytest.mark.parametrize("model", ["tiny_distilbert", "tiny_llama"])
def test_bf16_autocast_gradient_checkpointing_and_accumulation(model, request, battles):
    cfg = _config(
        request.getfixturevalue(model), precision="bf16", max_steps=2, grad_accum=2, gradient_checkpointing=True
    )
    clf = TransformerClassifier(cfg, progress=False).fit(battles, battles["label"].to_numpy())
    assert clf.steps_ == 2  # optimiser steps, each over grad_accum batches
    assert np.isfinite(clf.predict_proba(battles.iloc[:5])).all()


def test_lora_head_survives_save_and_load(tiny_llama, battles, tmp_path):
    clf = TransformerClassifier(_config(tiny_llama, max_steps=6), progress=False)
    clf.fit(battles, battles["label"].to_numpy())
    model = clf.model_
    assert hasattr(model, "peft_config")  # decoder LLM -> LoRA by default
    tok = load_tokenizer(tiny_llama)
    batch = pad_batch(
        BattleEncoder(tok, 96).encode_many(battles["prompt_turns"][:4], battles["a_turns"][:4], battles["b_turns"][:4]),
        tok.pad_token_id,
    )
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    save_classifier(model, tok, tmp_path / "saved", tiny_llama)
    reloaded = load_trained_classifier(tmp_path / "saved").eval()
    fresh = load_classifier(tiny_llama, pad_token_id=tok.pad_token_id).eval()
    with torch.no_grad():
        after = reloaded(**batch).logits
        untrained = fresh(**batch).logits
    torch.testing.assert_close(before, after)
    assert not torch.allclose(before, untrained)  # a lost head would show as different logits


def test_encoder_save_and_load_full_model(tiny_distilbert, battles, tmp_path):
    clf = TransformerClassifier(_config(tiny_distilbert), progress=False).fit(battles, battles["label"].to_numpy())
    tok = load_tokenizer(tiny_distilbert)
    batch = pad_batch([[2, 10, 11, 3]], tok.pad_token_id)
    clf.model_.eval()
    with torch.no_grad():
        before = clf.model_(**batch).logits
    save_classifier(clf.model_, tok, tmp_path / "m", tiny_distilbert)
    with torch.no_grad():
        after = load_trained_classifier(tmp_path / "m").eval()(**batch).logits
    torch.testing.assert_close(before, after)


# --- folds, checkpoints, resume, time budget -------------------------------------------------


def test_cross_fit_covers_each_row_once_and_resumes(tiny_distilbert, battles, tmp_path, monkeypatch):
    y = battles["label"].to_numpy()
    folds = np.arange(len(battles)) % 2
    test = battles.iloc[:7].assign(id=lambda f: "t" + f["id"])
    config = _config(tiny_distilbert)
    run = cross_fit_encoder(config, battles, y, folds, test, tmp_path, progress=False)
    assert run.complete and run.folds_done == [0, 1]
    oof = pd.read_parquet(run.oof_path)
    assert oof["id"].tolist() == battles["id"].tolist()  # every train row exactly once, in order
    p = oof[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    t = pd.read_parquet(run.test_path)
    assert len(t) == 7 and np.allclose(t.iloc[:, 1:].sum(axis=1), 1)

    calls = []
    original = TransformerClassifier.fit
    monkeypatch.setattr(TransformerClassifier, "fit", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    cross_fit_encoder(config, battles, y, folds, test, tmp_path, progress=False)
    assert calls == []  # both folds checkpointed: nothing retrained
    for f in (tmp_path / "encoder_tiny-distilbert").glob("fold_1.*"):
        f.unlink()
    run = cross_fit_encoder(config, battles, y, folds, test, tmp_path, progress=False)
    assert calls == [1] and run.complete  # only the missing fold ran
    changed = cross_fit_encoder(config, battles, y, 1 - folds, test, tmp_path, progress=False)
    assert len(calls) == 3 and changed.complete  # new folds: old checkpoints discarded


def _run_with_encoder(train_csv: Path, test_csv: Path, out: Path, model: Path, steps: int, *extra: str) -> int:
    """full_run with the tiny encoder (max_length 64, ``steps`` fine-tune steps) and ``extra`` flags."""
    from pipelines import full_run

    args = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(out), "--no-progress", "--n-jobs", "1"]
    encoder = ["--encoder", str(model), "--encoder-max-steps", str(steps), "--encoder-max-length", "64"]
    return full_run.main([*args, *encoder, *extra])


def test_time_budget_leaves_unfinished_encoder_out(tiny_distilbert, train_csv, test_csv, tmp_path):
    out = tmp_path / "run"
    assert (
        _run_with_encoder(train_csv, test_csv, out, tiny_distilbert, 3, *FAST_STACKER, "--time-budget-hours", "0") == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["features"]["sources"] == []  # nothing unfinished fed the stacker
    assert (out / "submission.csv").exists()
    assert not (out / "oof_tiny-distilbert.parquet").exists()


@pytest.mark.slow
def test_full_run_with_encoder_source(tiny_distilbert, train_csv, test_csv, tmp_path):
    """Full-length boosters; which stacker wins is up to a 3-step random encoder, so the test checks the
    choice against the two OOF losses rather than assuming a winner."""
    out = tmp_path / "run"
    assert _run_with_encoder(train_csv, test_csv, out, tiny_distilbert, 3, "--num-threads", "1") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["plan"]["encoders_finished"] == ["tiny-distilbert"]
    oof = pd.read_parquet(out / "oof_tiny-distilbert.parquet")
    folds = pd.read_csv(out / "folds.csv", dtype={"id": str})
    assert oof["id"].tolist() == folds["id"].tolist()
    candidates = ("features", "features+tiny-distilbert")
    losses = {k: report["oof"][f"stacker (calibrated) [{k}]"]["log_loss"] for k in candidates}
    with_encoder = losses["features+tiny-distilbert"] < losses["features"]
    assert report["chosen"]["oof_log_loss"] == min(losses.values())
    assert report["chosen"]["sources"] == (["tiny-distilbert"] if with_encoder else [])
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["chosen_stacker"] == ("full" if with_encoder else "features")
    model_json = json.loads((out / "model" / "stacker_full" / "model.json").read_text())  # kept either way
    assert "a_enc_tiny-distilbert" in model_json["columns"]


@pytest.mark.slow
def test_two_workers_on_cpu_train_on_the_stackers_rows_with_extra_train(tiny_distilbert, train_csv, test_csv, tmp_path):
    """The multi-GPU route, run for real: ``full_run`` launches 2 worker processes (torchrun -> accelerate DDP over
    gloo) on exactly the stacker's rows, here the primary file plus an ``--extra-train`` set the workers never
    read from disk; their OOF covers every training row and the stacker that uses it is fitted."""
    extra = tmp_path / "extra.csv"
    frame = make_battles(90, seed=11, start_id=50000)
    frame[frame["winner_tie"] == 0].to_csv(extra, index=False)
    out = tmp_path / "run"
    code = _run_with_encoder(
        train_csv, test_csv, out, tiny_distilbert, 2, *FAST_STACKER, "--folds", "3",
        "--encoder-workers", "2", "--encoder-precision", "fp32", "--extra-train", f"hh={extra}:0.5",
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    plan = report["plan"]["encoder_runs"]["tiny-distilbert"]
    assert plan["workers"] == 2 and plan["finished"], plan
    assert "encoder_stacker_error" not in report["plan"], report["plan"].get("encoder_stacker_error")
    folds = pd.read_csv(out / "folds.csv", dtype={"id": str})
    assert folds["id"].str.startswith("hh:").any()  # the extra rows are the stacker's ...
    oof = pd.read_parquet(out / "oof_tiny-distilbert.parquet")
    assert oof["id"].astype(str).tolist() == folds["id"].tolist()  # ... and exactly the encoder's
    p = oof[list(CLASS_COLUMNS)].to_numpy()
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    assert "stacker (calibrated) [features+tiny-distilbert]" in report["oof"]  # the stacker with the encoder was fitted


def test_a_run_s_rows_round_trip_through_the_launch_file(train_csv, tmp_path):
    """What the workers read back is what the stage holds: ids, turns (null turns, surrogates included),
    labels, weights and folds."""
    from pipelines.stages.encoder_launch import read_launch_rows, write_launch_rows

    train = load_battles(train_csv)[0]
    train["weight"] = np.linspace(0.5, 1.0, len(train))
    folds = np.arange(len(train)) % 3
    back, back_folds = read_launch_rows(write_launch_rows(train, folds, tmp_path / "rows.parquet"))
    np.testing.assert_array_equal(back_folds, folds)
    for col in ("id", "prompt_turns", "a_turns", "b_turns", "label", "weight"):
        assert back[col].tolist() == train[col].astype(str if col == "id" else object).tolist(), col


def test_more_workers_than_gpus_is_refused():
    from pipelines.stages.encoder_stage import worker_count

    config = EncoderConfig(model_path="m", workers=3)
    with pytest.raises(ValueError, match="workers 3, but this machine has 2 GPU"):
        worker_count(config, gpus=2)
    assert worker_count(config, gpus=0) == 3  # CPU workers (gloo)
    assert worker_count(EncoderConfig(model_path="m"), gpus=2) == 2
    assert worker_count(EncoderConfig(model_path="m"), gpus=1) == 1


def test_failing_encoder_stacker_keeps_the_features_only_submission(
    tiny_distilbert, train_csv, test_csv, tmp_path, monkeypatch
):

    def broken(*args, **kwargs):
        raise ValueError("corrupt probability file")

    monkeypatch.setattr("pipelines.stages.stacker_inputs.read_proba_file", broken)
    out = tmp_path / "run"
    assert _run_with_encoder(train_csv, test_csv, out, tiny_distilbert, 2, *FAST_STACKER, "--folds", "3") == 0
    report = json.loads((out / "report.json").read_text())
    assert "corrupt probability file" in report["plan"]["encoder_stacker_error"]
    assert report["chosen"]["sources"] == [] and (out / "submission.csv").exists()


def test_data_parallel_launch_passes_the_rows_and_test_row_count_and_no_test_file(train_csv, tmp_path, monkeypatch):
    """The launched command gets the stage's rows file and ``--test-rows`` (its plan reserves the post-fit test
    scoring), never a test file; ``pipelines.train_encoder --rows`` trains on exactly those rows and folds."""
    from pipelines import train_encoder
    from pipelines.stages import encoder_launch

    run_dir = tmp_path / "run"
    train = load_battles(train_csv)[0]
    folds = np.arange(len(train)) % 2
    rows = encoder_launch.write_launch_rows(train, folds, run_dir / "encoder_enc" / "launch_rows.parquet")
    cmd = encoder_launch.launch_command(rows, tmp_path / "enc.json", run_dir, 2, 600.0, test_rows=25000)
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2"
    args = cmd[cmd.index("pipelines.train_encoder") + 1 :]
    assert "--test" not in args and args[args.index("--test-rows") + 1] == "25000"
    assert "--train" not in args and args[args.index("--rows") + 1] == str(rows)
    assert "--seconds" not in args and float(args[args.index("--time-budget-hours") + 1]) == 600.0 / 3600  # hours

    (tmp_path / "enc.json").write_text(json.dumps({"model_path": str(tmp_path / "model"), "name": "enc"}))
    given_to = {}

    def run_in_process(config, train, folds, run_dir, seconds, progress=True, *, test=None, test_rows=0):
        given_to.update(ids=train["id"].tolist(), folds=list(folds), test=test, test_rows=test_rows, seconds=seconds)
        return type("Run", (), {"name": "enc", "folds_done": [0, 1], "folds_total": 2})()

    monkeypatch.setattr(train_encoder, "run_in_process", run_in_process)
    assert train_encoder.main(args) == 0
    assert given_to == {
        "ids": train["id"].astype(str).tolist(),
        "folds": folds.tolist(),
        "test": None,
        "test_rows": 25000,
        "seconds": 600.0,
    }


def test_train_encoder_refuses_a_train_file_whose_ids_the_folds_lack(train_csv, tmp_path, capsys):
    """By hand, ``--train`` must be the run's own training file: an id without a fold is one line, exit 2."""
    from pipelines import train_encoder
    from pipelines.runtime.errors import run_command

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train = load_battles(train_csv)[0]
    pd.DataFrame({"id": train["id"][1:], "fold": 0}).to_csv(run_dir / "folds.csv", index=False)
    argv = ["--run-dir", str(run_dir), "--train", str(train_csv), "--model", str(tmp_path / "m")]
    assert run_command(train_encoder.main, argv) == 2
    assert "no fold for 1 training id(s)" in capsys.readouterr().err


def test_full_run_refuses_more_workers_than_gpus_before_the_work(
    tiny_distilbert, train_csv, test_csv, tmp_path, capsys, monkeypatch
):
    from pipelines import full_run
    from pipelines.runtime.errors import run_command
    from pipelines.stages import encoder_stage

    monkeypatch.setattr(encoder_stage, "gpu_count", lambda: 2)
    argv = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(tmp_path / "run")]
    argv += ["--encoder", str(tiny_distilbert), "--encoder-workers", "3"]
    assert run_command(full_run.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --encoder-workers: encoder tiny-distilbert: workers 3, but this machine has 2")
    assert not (tmp_path / "run" / "folds.csv").exists()  # refused before the work
