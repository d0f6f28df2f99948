"""Thread counts from the cores really available; user errors as one line and exit code 2."""

from __future__ import annotations

import pytest

from pipelines.data.battles import DataError
from pipelines.runtime import resources
from pipelines.runtime.errors import USER_ERROR_EXIT, UserError, run_command


def _cgroup(tmp_path, v2: str | None = None, v1: tuple[int, int] | None = None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "limit"),
    [
        ("max 100000", None, None),
        ("150000 100000", None, 1.5),
        (None, (50000, 100000), 0.5),
        (None, (-1, 100000), None),
    ],
)
def test_cgroup_quota(tmp_path, v2, v1, limit):
    assert resources.cgroup_cpu_limit(_cgroup(tmp_path, v2, v1)) == limit


def test_available_cpus_is_the_smallest_limit_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv(resources.ENV, raising=False)
    monkeypatch.setattr(resources, "affinity_cpus", lambda: 8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert resources.available_cpus(_cgroup(tmp_path / "a", "150000 100000")) == 2  # 1.5 CPUs of quota: 2 threads
    assert resources.available_cpus(_cgroup(tmp_path / "b", "max 100000")) == 8  # unlimited: the affinity
    monkeypatch.setenv(resources.ENV, "3")
    assert resources.available_cpus(tmp_path) == 3 and resources.lightgbm_threads() == 3
    monkeypatch.setenv(resources.ENV, "zero")
    with pytest.raises(UserError, match="ARENA_PREF_THREADS"):
        resources.available_cpus()


def test_lightgbm_threads_leave_out_busy_cores(monkeypatch):
    monkeypatch.delenv(resources.ENV, raising=False)
    monkeypatch.setattr(resources, "available_cpus", lambda: 2)
    monkeypatch.setattr(resources, "busy_cpus", lambda sample_s=0.25: 0.1)
    assert resources.lightgbm_threads() == 2  # quiet: both cores
    monkeypatch.setattr(resources, "busy_cpus", lambda sample_s=0.25: 1.9)
    assert resources.lightgbm_threads() == 1  # another process holds a core: never fight it
    monkeypatch.setattr(resources, "busy_cpus", lambda sample_s=0.25: 6.0)
    assert resources.lightgbm_threads() == 1


def test_busy_cpus_is_a_fraction_of_the_cores():
    assert 0.0 <= resources.busy_cpus(0.05) <= resources.affinity_cpus() + 1e-9


def test_user_error_is_one_line_and_exit_2(capsys):
    def main(argv):
        raise DataError("train.csv: line 6, column 'id':\n id 'x' is not an integer")

    assert run_command(main, ["--train", "x"]) == USER_ERROR_EXIT
    assert capsys.readouterr().err == "error: train.csv: line 6, column 'id': id 'x' is not an integer\n"


def test_debug_shows_the_traceback_and_is_not_passed_on(monkeypatch):
    seen = []

    def main(argv):
        seen.append(argv)
        raise DataError("bad")

    with pytest.raises(DataError):
        run_command(main, ["--debug", "--train", "x"])
    assert seen == [["--train", "x"]]
    monkeypatch.setenv("ARENA_PREF_DEBUG", "1")
    with pytest.raises(DataError):
        run_command(main, [])


def test_bugs_keep_their_traceback_and_success_passes_the_code():
    with pytest.raises(ZeroDivisionError):
        run_command(lambda argv: 1 / 0, [])
    assert run_command(lambda argv: 0, []) == 0
    assert run_command(lambda argv: None, []) == 0
    assert run_command(lambda argv: 130, []) == 130
