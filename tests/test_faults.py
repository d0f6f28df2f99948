"""Faults a run must survive: killed mid-stage, two runs on one directory, read-only or full disk.

The end-to-end cases start real ``python -m pipelines.full_run`` / ``pipelines.tune`` processes on
tiny data and SIGKILL them at a logged point; the quick cases check the building blocks in-process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from pipelines.runtime.errors import UserError
from pipelines.runtime.run_dir import (
    RunDirError,
    atomic_to_csv,
    atomic_write_bytes,
    atomic_write_text,
    hold_run_dir,
    sweep_stale_temps,
    temp_path,
)
from pipelines.runtime.submission import check_submission_file, write_submission
from tests.conftest import ROOT, make_battles

QUICK = ["--folds", "3", "--seed", "7", "--num-boost-round", "20", "--num-threads", "1", "--n-jobs", "1"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ARENA_PREF_THREADS": "1"}


# --------------------------------------------------------------------------- building blocks (quick)


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path):
    target = tmp_path / "d" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_to_csv(pd.DataFrame({"a": [1, 2]}), tmp_path / "d" / "f.csv", index=False)
    assert (tmp_path / "d" / "f.csv").read_text() == "a\n1\n2\n"
    assert _temps(tmp_path) == []


def _disk_full_after(n_bytes: int):
    """A ``to_csv`` that writes ``n_bytes`` then fails as a full disk does."""

    def to_csv(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("x" * n_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return to_csv


def test_disk_full_keeps_the_previous_submission_and_no_partial_file(tmp_path, monkeypatch):
    ids, proba = ["1", "2"], np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    path = tmp_path / "submission.csv"
    write_submission(ids, proba, path)
    before = path.read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _disk_full_after(10))
    with pytest.raises(RunDirError, match=r"submission\.csv: disk full; nothing was written"):
        write_submission(ids, proba[::-1], path)
    assert path.read_bytes() == before  # the old, valid file: not a torn new one
    assert _temps(tmp_path) == []


def test_disk_full_without_a_previous_file_leaves_none(tmp_path, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_csv", _disk_full_after(3))
    with pytest.raises(UserError, match="disk full"):
        write_submission(["1"], np.array([[0.2, 0.3, 0.5]]), tmp_path / "submission.csv")
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_submission_is_never_published(tmp_path, monkeypatch):
    import pipelines.runtime.submission as submission

    def corrupt(path, ids):
        raise submission.SubmissionError("checked and refused")

    monkeypatch.setattr(submission, "check_submission_file", corrupt)
    with pytest.raises(submission.SubmissionError):
        write_submission(["1"], np.array([[0.2, 0.3, 0.5]]), tmp_path / "submission.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_on_a_held_directory_refuses_with_one_line(tmp_path):
    with hold_run_dir(tmp_path / "run"):
        with pytest.raises(RunDirError, match=r"in use by another run \(pid \d+\)"):
            with hold_run_dir(tmp_path / "run"):
                pass
    with hold_run_dir(tmp_path / "run"):  # released on exit
        pass


def test_stale_temps_of_dead_writers_are_swept_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".submission.csv.{int(dead.stdout)}.{'0' * 32}.tmp"
    stale.write_text("half")
    live = temp_path(tmp_path / "report.json")
    live.write_text("being written")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert sweep_stale_temps(tmp_path) == [stale]
    assert live.exists() and other.exists()


# --------------------------------------------------------------------------- real processes (slow)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fault_data")
    make_battles(240, seed=1).to_csv(d / "train.csv", index=False)
    make_battles(60, seed=2, labelled=False, start_id=90000).to_csv(d / "test.csv", index=False)
    return d


def _full_run(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.full_run", "--train", str(data / "train.csv"), "--test",
        str(data / "test.csv"), "--out", str(out), "--no-progress", *QUICK, *extra,
    ]  # fmt: skip


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def _kill_at(proc: subprocess.Popen, marker: str, timeout: float = 180) -> str:
    """SIGKILL ``proc`` as soon as its log shows ``marker``; the log up to then."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)[-2000:]
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"ended before {marker!r}:\n" + "".join(seen)[-2000:]
    return "".join(seen)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> bytes:
    """The submission of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _run(_full_run(data, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return (out / "submission.csv").read_bytes()


def _assert_consistent(out: Path, data: Path) -> None:
    """One run's artefacts only: the submission is valid, folds.json describes folds.csv and this
    seed, the report is this run's, and no temporary file is left anywhere."""
    test_ids = pd.read_csv(data / "test.csv", dtype={"id": str})["id"]
    check_submission_file(out / "submission.csv", test_ids)
    meta = json.loads((out / "folds.json").read_text())
    assert (meta["seed"], meta["n_folds"]) == (7, 3)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["seed"] == 7 and report["config"]["n_folds"] == 3
    assert _temps(out.parent) == []


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["features: 240 rows", "stacker fold 0"], ids=["features", "stacker"])
def test_run_killed_mid_stage_then_rerun_gives_the_uninterrupted_submission(data, reference, tmp_path, marker):
    out = tmp_path / "run"
    _kill_at(_start(_full_run(data, out)), marker)
    assert not (out / "submission.csv").exists()  # killed before anything was submitted
    again = _run(_full_run(data, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "submission.csv").read_bytes() == reference
    _assert_consistent(out, data)


@pytest.mark.slow
def test_two_runs_on_one_directory_one_refuses_cleanly_and_the_submission_is_whole(data, reference, tmp_path):
    out = tmp_path / "run"
    procs = [_start(_full_run(data, out)) for _ in range(2)]
    results = [(p.communicate(timeout=300)[0], p.returncode) for p in procs]
    codes = sorted(code for _, code in results)
    assert codes in ([0, 0], [0, 2]), results
    for output, code in results:
        if code == 2:
            errors = [line for line in output.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "in use by another run" in errors[0]
            assert "Traceback" not in output
    assert (out / "submission.csv").read_bytes() == reference
    _assert_consistent(out, data)


@pytest.mark.slow
def test_tune_worker_killed_mid_study_resumes_and_the_trial_count_adds_up(data, tmp_path):
    out = tmp_path / "tune"
    args = [
        sys.executable, "-m", "pipelines.tune", "--train", str(data / "train.csv"), "--test",
        str(data / "test.csv"), "--out", str(out), "--no-progress", *QUICK,
    ]  # fmt: skip
    env_hb = {**ENV, "ARENA_PREF_HEARTBEAT_S": "1"}
    proc = subprocess.Popen(
        [*args, "--n-trials", "200"], cwd=ROOT, env=env_hb, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _kill_at(proc, "Trial 2 ")
    url = f"sqlite:///{out / 'optuna.db'}"
    states = [t.state for t in optuna.load_study(study_name="stacker", storage=url).trials]
    finished = sum(s.is_finished() and s != optuna.trial.TrialState.FAIL for s in states)
    running = states.count(optuna.trial.TrialState.RUNNING)
    assert finished >= 2
    time.sleep(3)  # past the heartbeat grace period (2 x 1 s): the killed worker's trial is stale
    resumed = subprocess.run([*args, "--n-trials", "3"], cwd=ROOT, env=env_hb, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna.load_study(study_name="stacker", storage=url).trials
    after = [t.state for t in trials]
    assert sum(s.is_finished() and s != optuna.trial.TrialState.FAIL for s in after) == finished + 3
    assert after.count(optuna.trial.TrialState.RUNNING) == 0  # the killed trial is not left running
    assert after.count(optuna.trial.TrialState.FAIL) == running
    assert len(trials) == len(states) + 3
    assert json.loads((out / "best_params.json").read_text())["n_trials"] == len(trials)


@contextmanager
def _tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return errors[0]


def test_read_only_output_directory_exits_2_with_one_line_before_any_work(data, tmp_path):
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        done = _run(_full_run(data, ro / "run"))
    line = _one_error_line(done)
    assert "--out" in line and "Read-only file system" in line
    assert "features:" not in done.stderr  # refused before any feature was computed


@pytest.mark.slow
def test_full_disk_at_the_submission_leaves_no_partial_file_and_says_so(data, tmp_path):
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    big = tmp_path / "big"
    big.mkdir()
    make_battles(200, seed=5, labelled=False, start_id=90000).to_csv(big / "test.csv", index=False)
    shutil.copy(data / "train.csv", big / "train.csv")
    with _tmpfs(tmp_path / "full", "size=256k") as disk:
        stat = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 4096))  # one page left
        done = _run(_full_run(big, tmp_path / "run", "--submission", str(disk / "submission.csv")))
        left = sorted(p.name for p in disk.iterdir())
    line = _one_error_line(done)
    assert "submission.csv: disk full" in line
    assert left == ["filler"]  # no partial submission, no temporary file
