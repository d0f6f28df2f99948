"""A rerun that fails leaves the previous run's submission, model and report exactly as they were, and
no partial or temporary file: the run's outputs are staged and swapped in together at the end
(``pipelines.runtime.run_dir.staged_outputs``). Disk full is simulated (an ``OSError(ENOSPC)`` where a file is
written or moved), missing or mismatched labels are real files; each rerun goes through the command."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from arena_schema import CLASS_COLUMNS
from pipelines import full_run
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from pipelines.runtime.run_dir import JOURNAL, RunDirError, atomic_write_text, recover_commit, staged_outputs
from tests.conftest import make_battles

FAST = ["--num-boost-round", "5", "--early-stopping-rounds", "2", "--num-threads", "1", "--no-progress"]


WORKING = {".lock", "folds.csv", "folds.json"}  # the lock, and the folds cache a rerun may remake (keyed)


def _snapshot(out: Path) -> dict[str, str]:
    """sha256 of every file under the run directory but the working files, names included."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in WORKING
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("commit_data")
    paths = {"train": root / "train.csv", "test": root / "test.csv", "labels": root / "labels.csv"}
    make_battles(90, seed=51).to_csv(paths["train"], index=False)
    make_battles(25, seed=52, labelled=False, start_id=9000).to_csv(paths["test"], index=False)
    make_battles(25, seed=52, start_id=9000)[["id", *CLASS_COLUMNS]].to_csv(paths["labels"], index=False)
    paths["other_labels"] = root / "other_labels.csv"
    make_battles(25, seed=52, start_id=7000)[["id", *CLASS_COLUMNS]].to_csv(paths["other_labels"], index=False)
    return paths


def _argv(data: dict[str, Path], out: Path, seed: int, *extra: str) -> list[str]:
    base = ["--train", str(data["train"]), "--test", str(data["test"]), "--out", str(out), "--n-jobs", "1"]
    return [*base, "--folds", "3", "--seed", str(seed), *FAST, *extra]


@pytest.fixture
def previous(data, tmp_path) -> tuple[Path, dict[str, str]]:
    out = tmp_path / "run"
    assert full_run.main(_argv(data, out, 1, "--test-labels", str(data["labels"]))) == 0
    snap = _snapshot(out)
    assert {"submission.csv", "model/manifest.json", "report.json", "report.md", "oof_stacker.csv"} <= set(snap)
    return out, snap


def _fails_with_one_line(argv: list[str], capsys, needle: str) -> None:
    code = run_command(full_run.main, argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == USER_ERROR_EXIT and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert needle in lines[0], lines[0]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "where",
    [
        "pipelines.model.run.write_report",
        "pipelines.bundle.model_bundle.write_manifest",
        "pipelines.model.run.save_predictions",
    ],
    ids=["report", "model", "oof predictions"],
)
def test_disk_full_on_rerun_leaves_the_previous_run_identical(where, data, previous, monkeypatch, capsys):
    out, before = previous
    monkeypatch.setattr(where, _disk_full)
    _fails_with_one_line(_argv(data, out, 2), capsys, "disk full")
    assert _snapshot(out) == before  # submission, model, report: byte for byte; no partial folder or temp


def test_disk_full_while_swapping_rolls_back(data, previous, monkeypatch, capsys):
    out, before = previous
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        if not str(dst).endswith(JOURNAL):
            calls["n"] += 1
        if calls["n"] == 5:  # halfway through the swap: submission and model already moved in
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    import pipelines.runtime.run_dir

    def commit_with_fault(self, _commit=pipelines.runtime.run_dir.StagedOutputs.commit):
        calls["n"] = 0
        monkeypatch.setattr(pipelines.runtime.run_dir.os, "replace", replace)
        try:
            _commit(self)
        finally:
            monkeypatch.setattr(pipelines.runtime.run_dir.os, "replace", real)

    monkeypatch.setattr(pipelines.runtime.run_dir.StagedOutputs, "commit", commit_with_fault)
    _fails_with_one_line(_argv(data, out, 2), capsys, "cannot put the run's files in place (disk full)")
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    ("labels", "needle"), [("missing", "--test-labels"), ("other_labels", "no label for 25 of 25")]
)
def test_rerun_with_bad_test_labels_leaves_the_previous_run_identical(labels, needle, data, previous, capsys):
    out, before = previous
    path = str(data[labels]) if labels in data else str(out.parent / "nope.csv")
    _fails_with_one_line(_argv(data, out, 2, "--test-labels", path), capsys, needle)
    assert _snapshot(out) == before


def test_a_successful_rerun_replaces_all_together(data, previous):
    out, before = previous
    assert full_run.main(_argv(data, out, 2)) == 0
    after = _snapshot(out)
    assert set(after) == set(before)
    changed = {k for k in before if before[k] != after[k]}
    assert {"submission.csv", "report.json", "model/manifest.json", "oof_stacker.csv"} <= changed
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert report["config"]["seed"] == 2 and manifest["params"]["seed"] == 2
    assert "holdout" not in report  # the new report is the rerun's own, not the old one kept beside it


def test_a_swap_killed_halfway_is_rolled_back_by_the_next_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    targets = {n: out / n for n in ("a.txt", "b.txt", "c.txt")}
    for name, path in targets.items():
        path.write_text(f"old {name}")
    (out / "model").mkdir()
    (out / "model" / "m.json").write_text("old model")
    targets["model"] = out / "model"
    real = os.replace
    calls = {"n": 0}

    class Killed(BaseException):
        pass

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Killed  # as SIGKILL would: nothing after this line runs, the journal stays
        return real(src, dst)

    with pytest.raises(Killed), staged_outputs(out, targets) as stage:
        for name in ("a.txt", "b.txt", "c.txt"):
            stage.path(name).write_text(f"new {name}")
        stage.path("model").mkdir()
        (stage.path("model") / "m.json").write_text("new model")
        monkeypatch.setattr("pipelines.runtime.run_dir.os.replace", replace)
    monkeypatch.setattr("pipelines.runtime.run_dir.os.replace", real)
    assert (out / JOURNAL).exists() and (out / "a.txt").read_text() == "new a.txt"  # half swapped
    recover_commit(out)
    assert {p.name: p.read_text() for p in out.glob("*.txt")} == {n: f"old {n}" for n in ("a.txt", "b.txt", "c.txt")}
    assert (out / "model" / "m.json").read_text() == "old model"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt", "model"]


def test_cleanup_that_fails_does_not_hide_the_first_error(tmp_path, monkeypatch, caplog):
    def unlink(self, missing_ok=False):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr("pipelines.runtime.run_dir.os.fsync", _disk_full)
    with pytest.raises(RunDirError, match="disk full") as info:
        atomic_write_text(tmp_path / "report.json", "{}")
    assert "could not remove" in caplog.text and "Permission denied" in caplog.text
    assert "\n" not in str(info.value)
