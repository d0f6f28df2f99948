"""tune and the run folder under faults (issue 26, cases 10-12): an unreachable storage, a full disk at the
booster, Ctrl-C in a trial, a second command on the same ``--out``, a trial killed with SIGKILL.

The signal cases start real ``python -m pipelines.tune`` processes on tiny data and signal them at a logged
point; the others run the command in-process through ``run_command`` (one line, exit 2)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from pipelines import full_run, tune
from pipelines.experiments.tune import Interrupt, StopRequested, fail_trials_of_dead_workers
from pipelines.runtime.errors import USER_ERROR_EXIT, run_command
from pipelines.runtime.run_dir import hold_run_dir
from pipelines.runtime.storage import StorageError, storage_errors, worker_identity
from stacking.calibration import ProbabilityCalibrator
from stacking.model import StackerModel, booster_name
from tests.conftest import ROOT, make_battles

QUICK = ["--folds", "3", "--seed", "7", "--num-boost-round", "20", "--num-threads", "1", "--n-jobs", "1"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ARENA_PREF_THREADS": "1"}
ENV.pop("ARENA_PREF_HEARTBEAT_S", None)  # the default (60 s): a resume at once must not wait for it


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tune_hardening")
    make_battles(120, seed=3).to_csv(d / "train.csv", index=False)
    make_battles(20, seed=4, labelled=False, start_id=90000).to_csv(d / "test.csv", index=False)
    return d


def _data_args(data: Path, out: Path) -> list[str]:
    return ["--train", str(data / "train.csv"), "--test", str(data / "test.csv"), "--out", str(out), "--no-progress"]


def _one_error_line(code: int, err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == USER_ERROR_EXIT and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: nothing listens there


def _no_features(*_args, **_kwargs):
    raise AssertionError("features were computed before the storage was reached")


# --------------------------------------------------------------------------- in-process (quick)


def test_unreachable_storage_is_one_line_before_any_feature(data, tmp_path, monkeypatch, capsys):
    """Case 10: a PostgreSQL URL nobody answers on: exit 2, one line naming the host, no password, no work."""
    if not any(importlib.util.find_spec(m) for m in ("psycopg2", "psycopg")):
        pytest.skip("no PostgreSQL driver installed")
    monkeypatch.setattr("pipelines.experiments.tune.model_inputs", _no_features)
    port = _closed_port()
    url = f"postgresql://tuner:s3cret@127.0.0.1:{port}/studies"
    code = run_command(tune.main, [*_data_args(data, tmp_path / "t"), "--storage", url, *QUICK])
    line = _one_error_line(code, capsys.readouterr().err)
    assert f"storage '127.0.0.1:{port}/studies': cannot connect" in line and "Connection refused" in line
    assert "s3cret" not in line and "tuner" not in line


def test_a_second_command_on_a_held_out_is_refused_before_any_feature(data, tmp_path, monkeypatch, capsys):
    """tune holds ``--out`` as full_run does: while a run holds it, tune stops with one line."""
    monkeypatch.setattr("pipelines.experiments.tune.model_inputs", _no_features)
    out = tmp_path / "run"
    with hold_run_dir(out):  # what full_run holds while it runs
        code = run_command(tune.main, [*_data_args(data, out), "--n-trials", "1", *QUICK])
    assert "in use by another run" in _one_error_line(code, capsys.readouterr().err)
    assert not (out / "optuna.db").exists()


def test_a_database_lost_mid_study_is_one_line():
    from sqlalchemy.exc import OperationalError

    with pytest.raises(StorageError, match=r"storage 'db\.example:5432/s': lost the database \(server closed"):
        with storage_errors("postgresql://u:secret@db.example:5432/s"):
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly\nmore"))


def test_ctrl_c_stops_at_a_fold_boundary_and_a_second_one_only_inside_a_fit():
    interrupt = Interrupt()
    interrupt.check()  # nothing asked: goes on
    interrupt.handle(signal.SIGINT, None)  # the first: asks, never raises
    assert interrupt.requested
    interrupt.handle(signal.SIGINT, None)  # outside a fit (Optuna's bookkeeping, the write-up): no raise
    with pytest.raises(KeyboardInterrupt), interrupt.fitting():
        with interrupt.fitting(False):  # the storage, inside a fit
            interrupt.handle(signal.SIGINT, None)
        interrupt.handle(signal.SIGINT, None)  # the fit itself: at once
    assert not interrupt.in_fit
    with pytest.raises(StopRequested), interrupt.fitting():
        interrupt.check()  # the fold boundary


def test_running_trials_of_a_dead_worker_are_failed_others_kept(tmp_path):
    """A trial whose worker (this machine, this boot) is gone is FAIL at once; a live worker's stays RUNNING."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    code = "import json; from pipelines.runtime.storage import worker_identity as w; print(json.dumps(w()))"
    gone = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    dead, live, unknown = study.ask(), study.ask(), study.ask()
    dead.set_user_attr("worker", json.loads(gone.stdout))
    live.set_user_attr("worker", worker_identity())
    unknown.set_user_attr("worker", {**worker_identity(), "host": "another-machine"})
    assert fail_trials_of_dead_workers(study) == [dead.number]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]


def test_the_booster_file_is_what_lightgbm_save_model_writes(tmp_path):
    """The booster is now written by Python (a full disk is an OSError): the file is unchanged, byte for byte."""
    rng = np.random.default_rng(0)
    X, y = pd.DataFrame(rng.random((90, 4)), columns=list("abcd")), rng.integers(0, 3, 90)
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(X, y), 8)
    booster.best_iteration = 5
    booster.save_model(str(tmp_path / "lightgbm.txt"), num_iteration=5)
    calibrator = ProbabilityCalibrator("none").fit(booster.predict(X), y)
    StackerModel([booster], list("abcd"), calibrator).save(tmp_path / "ours")
    assert (tmp_path / "ours" / booster_name(0)).read_bytes() == (tmp_path / "lightgbm.txt").read_bytes()


def test_disk_full_while_the_booster_is_saved_is_one_line_and_keeps_the_previous_run(
    data, tmp_path, monkeypatch, capsys
):
    """Case 11: the booster file lands on a full disk (``/dev/full``): one line, exit 2; the previous
    submission, model and report stay byte for byte, no partial folder or temporary file."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = tmp_path / "run"
    argv = [*_data_args(data, out), "--folds", "3", "--num-boost-round", "5", "--num-threads", "1", "--n-jobs", "1"]
    assert full_run.main([*argv, "--seed", "1"]) == 0
    before = _snapshot(out)
    real_save = StackerModel.save

    def save_onto_a_full_disk(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / booster_name(0)).symlink_to("/dev/full")  # writing it fails with ENOSPC
        return real_save(self, directory)

    monkeypatch.setattr(StackerModel, "save", save_onto_a_full_disk)
    code = run_command(full_run.main, [*argv, "--seed", "2"])
    assert "disk full" in _one_error_line(code, capsys.readouterr().err)
    assert _snapshot(out) == before


def _snapshot(out: Path) -> dict[str, bytes]:
    keep = {".lock", "folds.csv", "folds.json"}  # working files a rerun with another seed remakes
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in keep
    }


# --------------------------------------------------------------------------- real processes and signals


def _start(data: Path, out: Path, n_trials: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipelines.tune", *_data_args(data, out), "--n-trials", str(n_trials), *QUICK]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's background job ignores it
    )


def _read_until(proc: subprocess.Popen, *markers: str, timeout: float = 180) -> str:
    """The log up to the line holding the last of ``markers``, each seen after the one before."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    pending = list(markers)
    for line in proc.stdout:
        seen.append(line)
        if pending and pending[0] in line:
            pending.pop(0)
            if not pending:
                return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)[-3000:]
    raise AssertionError(f"ended before {pending}:\n" + "".join(seen)[-3000:])


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="stacker", storage=f"sqlite:///{out / 'optuna.db'}").trials


@pytest.mark.slow
def test_ctrl_c_during_trial_0_ends_130_keeps_the_study_and_resumes(data, tmp_path):
    """Case 12: SIGINT while trial 0 fits stops it at the next fold boundary: exit 130, no traceback,
    best_params.json written, no trial left RUNNING; the next run adds its trials to the study."""
    out = tmp_path / "tune"
    proc = _start(data, out, 50)
    _read_until(proc, "baseline OOF log loss", "stacker fold 0")  # trial 0's first fold
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest[-3000:]
    assert "Traceback" not in rest and "interrupted: writing the results" in rest, rest[-3000:]
    states = [t.state for t in _trials(out)]
    assert states[0] in (TrialState.FAIL, TrialState.COMPLETE) and TrialState.RUNNING not in states
    assert json.loads((out / "best_params.json").read_text())["n_trials"] == len(states)
    _resume(data, out, 1)
    after = _trials(out)
    assert len(after) == len(states) + 1 and after[-1].state == TrialState.COMPLETE


def _resume(data: Path, out: Path, n_trials: int) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pipelines.tune", *_data_args(data, out), "--n-trials", str(n_trials), *QUICK]
    done = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ctrl_c_during_the_baseline_and_twice_in_a_trial_end_130_without_traceback(data, tmp_path):
    """Ctrl-C before any trial (the baseline) and Ctrl-C twice in a trial (stop at once): exit 130, one
    warning, no traceback; the study resumes, with no trial left RUNNING."""
    out = tmp_path / "baseline"
    proc = _start(data, out, 50)
    _read_until(proc, "baseline: default parameters")
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in rest, rest[-3000:]
    assert "run again to resume" in rest and not (out / "best_params.json").exists()

    proc = _start(data, out, 50)  # the same study: the baseline first, then trials
    _read_until(proc, "baseline OOF log loss", "stacker fold 0")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C: at once, not at the fold's end
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in rest, rest[-3000:]
    n = len(_trials(out))
    _resume(data, out, 1)
    after = _trials(out)
    assert len(after) == n + 1 and TrialState.RUNNING not in [t.state for t in after]


@pytest.mark.slow
def test_tune_holds_out_and_a_trial_killed_with_sigkill_is_failed_on_an_immediate_resume(data, tmp_path, capsys):
    """While tune runs, full_run on its ``--out`` is refused in one line. Killed with SIGKILL during a trial,
    the next run at once (default 60 s heartbeat, long from stale) marks that trial FAIL and adds its own."""
    out = tmp_path / "tune"
    proc = _start(data, out, 200)
    _read_until(proc, "baseline OOF log loss")
    code = run_command(full_run.main, [*_data_args(data, out), *QUICK])
    assert "in use by another run" in _one_error_line(code, capsys.readouterr().err)
    _read_until(proc, "stacker fold 0")  # inside a trial (every fold line after the baseline is a trial's)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = _trials(out)
    killed = [t.number for t in before if t.state == TrialState.RUNNING]
    assert len(killed) == 1, [t.state for t in before]
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in before)
    resumed = _resume(data, out, 2)
    assert f"trial(s) {killed} were left RUNNING by a worker that died" in resumed.stderr
    after = _trials(out)
    assert after[killed[0]].state == TrialState.FAIL
    assert TrialState.RUNNING not in [t.state for t in after]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == finished + 2
    assert json.loads((out / "best_params.json").read_text())["n_trials"] == len(before) + 2
