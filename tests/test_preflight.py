"""Arguments that would waste a run are refused up front: one line, exit 2, before any feature."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipelines.config.run_config import RunConfig, SourceFiles
from pipelines.data.battles import load_battles
from pipelines.data.folds import check_labels, make_folds
from pipelines.preflight import PreflightError, check_run, check_storage_url
from pipelines.runtime.errors import run_command
from tests.conftest import ROOT, make_battles


def _config(train, test, out, **kw) -> RunConfig:
    return RunConfig(train_path=str(train), test_path=str(test), out_dir=str(out), **kw)


def test_good_arguments_pass(train_csv, test_csv, tmp_path):
    check_run(_config(train_csv, test_csv, tmp_path / "new" / "run"), storage=f"sqlite:///{tmp_path}/optuna.db")
    assert (tmp_path / "new" / "run").is_dir() and list((tmp_path / "new" / "run").iterdir()) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c, t: setattr(c, "n_folds", 1), "--folds 1: need at least 2"),
        (lambda c, t: setattr(c, "train_path", str(t / "missing.csv")), "--train .*missing.csv: no such file"),
        (lambda c, t: setattr(c, "test_path", str(t)), "--test .*: not a file"),
        (lambda c, t: (t / "afile").write_text("x") and setattr(c, "out_dir", str(t / "afile")), "not a directory"),
        (
            lambda c, t: c.extra_sources.update(enc=SourceFiles(f"{t}/oof.parquet", f"{t}/test.parquet")),
            "--source enc OOF",
        ),
    ],
    ids=["folds", "missing-train", "test-is-dir", "out-is-file", "source-missing"],
)
def test_bad_arguments_are_refused(train_csv, test_csv, tmp_path, change, message):
    config = _config(train_csv, test_csv, tmp_path / "run")
    change(config, tmp_path)
    with pytest.raises(PreflightError, match=message):
        check_run(config)


def test_a_source_spec_is_parsed_once_into_its_two_files(train_csv, test_csv, tmp_path):
    config = _config(train_csv, test_csv, tmp_path / "run", extra_sources={"enc": "o.parquet,t.parquet"})
    assert config.extra_sources == {"enc": SourceFiles(oof="o.parquet", test="t.parquet")}
    assert config.to_dict()["extra_sources"] == {"enc": "o.parquet,t.parquet"}  # report.json keeps the flag's text
    assert RunConfig.from_dict(config.to_dict()).extra_sources == config.extra_sources
    with pytest.raises(ValueError, match="extra source enc: expected OOF,TEST"):
        _config(train_csv, test_csv, tmp_path / "run", extra_sources={"enc": "only_one.parquet"})


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a database URL"),
        ("nosuchdb://host/db", "unknown database kind 'nosuchdb'"),
        ("sqlite:////no/such/folder/optuna.db", "folder /no/such/folder does not exist"),
    ],
)
def test_bad_storage_urls_are_refused(url, message):
    with pytest.raises(PreflightError, match=message):
        check_storage_url(url)


def test_storage_driver_that_is_not_installed_is_named(monkeypatch):
    import sqlalchemy.dialects.sqlite.pysqlite as pysqlite

    def missing():
        raise ImportError("No module named 'sqlite3'")

    monkeypatch.setattr(pysqlite.SQLiteDialect_pysqlite, "import_dbapi", classmethod(lambda cls: missing()))
    with pytest.raises(PreflightError, match="driver is not installed"):
        check_storage_url("sqlite:///:memory:")


def test_storage_password_is_not_printed():
    with pytest.raises(PreflightError) as info:
        check_storage_url("nosuchdb://user:secret@host/db")
    assert "secret" not in str(info.value)


def test_labels_one_class_few_prompts_few_rows(train_csv):
    battles, _ = load_battles(train_csv)
    check_labels(battles, 5)
    with pytest.raises(PreflightError, match="same label"):
        check_labels(battles.assign(label=0), 5)
    one_prompt = battles.assign(prompt_turns=[["same prompt"]] * len(battles))
    with pytest.raises(PreflightError, match="only 1 distinct prompt"):
        check_labels(one_prompt, 2)
    with pytest.raises(PreflightError, match="too few for 5 folds"):
        check_labels(battles.iloc[np.r_[0:14]].reset_index(drop=True).assign(label=[0, 1] * 7), 5)
    with pytest.raises(PreflightError):  # make_folds itself refuses, before any feature is computed
        make_folds(battles.assign(label=2), 5)


def _full_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.full_run", "--no-progress", "--num-threads", "1", "--n-jobs", "1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_refuses_one_class_train_before_features(tmp_path, test_csv):
    train = tmp_path / "one_class.csv"
    frame = make_battles(60, seed=3)
    frame[["winner_model_a", "winner_model_b", "winner_tie"]] = [1, 0, 0]
    frame.to_csv(train, index=False)
    done = _full_run("--train", str(train), "--test", str(test_csv), "--out", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train: every row has the same label (A wins); need at least 2 classes to learn anything"]
    assert "features:" not in done.stderr and "Traceback" not in done.stderr


def test_tune_refuses_a_bad_storage_url_in_one_line(train_csv, test_csv, tmp_path):
    argv = ["--train", str(train_csv), "--test", str(test_csv), "--out", str(tmp_path / "t"), "--storage", "nosuch://x"]
    from pipelines.tune import main

    assert run_command(main, argv) == 2


def test_the_readme_postgresql_url_gets_the_installed_driver(monkeypatch):
    """``postgresql://user@host/db`` as the README writes it: SQLAlchemy 2.1 maps it to psycopg 3; where
    only psycopg2 is installed (requirements.txt) the URL is given that driver, and the check passes."""
    import importlib.util

    from pipelines.runtime.storage import normalise_url

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    assert normalise_url("postgresql://user:p%40ss@host:5432/db") == "postgresql+psycopg2://user:p%40ss@host:5432/db"
    assert normalise_url("postgresql+psycopg://user@host/db") == "postgresql+psycopg://user@host/db"  # named: kept
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    check_storage_url("postgresql://user:secret@host/db")  # the driver imports: no error
