"""A stacker worse than the class prior is not submitted unless the user says so."""

from __future__ import annotations

import logging

import numpy as np

from pipelines.model.prior_guard import decide, prior_probabilities


def test_stacker_better_than_prior_is_kept(caplog):
    with caplog.at_level(logging.WARNING):
        decision = decide(0.95, 1.08)
    assert not decision.use_prior and not decision.worse_than_prior
    assert caplog.records == []


def test_stacker_worse_than_prior_submits_the_prior_and_says_both_numbers(caplog):
    with caplog.at_level(logging.WARNING):
        decision = decide(1.12345, 1.08001)
    assert decision.use_prior and decision.worse_than_prior and not decision.allowed
    assert decision.as_dict() == {
        "use_prior": True,
        "worse_than_prior": True,
        "stacker_oof_log_loss": 1.12345,
        "prior_oof_log_loss": 1.08001,
        "allowed": False,
    }
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "1.12345" in record.getMessage() and "1.08001" in record.getMessage()
    assert "submitting the class prior" in record.getMessage()


def test_allow_worse_keeps_the_stacker_but_still_warns_and_records(caplog):
    with caplog.at_level(logging.WARNING):
        decision = decide(1.2, 1.1, allow_worse=True)
    assert not decision.use_prior and decision.worse_than_prior and decision.allowed
    assert "--allow-worse-than-prior" in caplog.records[0].getMessage()


def test_a_tie_or_nan_loss_is_not_better_than_the_prior():
    assert decide(1.1, 1.1).use_prior
    assert decide(float("nan"), 1.1).use_prior


def test_prior_probabilities_are_train_frequencies_never_zero():
    proba = prior_probabilities(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(proba, [[4 / 7, 2 / 7, 1 / 7]] * 2)


def test_cli_flag_reaches_the_config(train_csv, test_csv, tmp_path):
    from pipelines.full_run import build_parser, config_from_args

    base = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(tmp_path), "--num-threads", "1"]
    assert not config_from_args(build_parser().parse_args(base))[0].allow_worse_than_prior
    assert config_from_args(build_parser().parse_args([*base, "--allow-worse-than-prior"]))[0].allow_worse_than_prior


def test_full_run_submits_the_prior_when_the_stacker_is_worse(train_csv, test_csv, tmp_path, monkeypatch):
    """The wiring in pipelines.model.run: a stacker judged worse than the prior leaves the prior and a loud report."""
    import json

    import pandas as pd

    from arena_schema import CLASS_COLUMNS
    from pipelines import full_run
    from pipelines.model import run

    real_decide = run.decide
    monkeypatch.setattr(run, "decide", lambda stacker, prior, allow: real_decide(prior + 0.5, prior, allow))
    out = tmp_path / "run"
    fast = ["--num-boost-round", "30", "--early-stopping-rounds", "5", "--num-threads", "1", "--n-jobs", "1"]
    args = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(out), "--no-progress", *fast]
    assert full_run.main(args) == 0
    labels = pd.read_csv(train_csv)[list(CLASS_COLUMNS)].to_numpy().argmax(axis=1)
    sub = pd.read_csv(out / "submission.csv")
    np.testing.assert_allclose(sub[list(CLASS_COLUMNS)].to_numpy(), prior_probabilities(labels, len(sub)))
    report = json.loads((out / "report.json").read_text())
    assert report["prior_guard"]["use_prior"] and report["prior_guard"]["worse_than_prior"]
    assert "WARNING" in (out / "report.md").read_text()

    out2 = tmp_path / "run_allowed"
    allowed = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(out2), "--allow-worse-than-prior"]
    assert full_run.main([*allowed, "--no-progress", *fast]) == 0
    sub2 = pd.read_csv(out2 / "submission.csv")
    assert not np.allclose(sub2[list(CLASS_COLUMNS)].to_numpy(), prior_probabilities(labels, len(sub2)))
