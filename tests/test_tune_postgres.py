"""Distributed tuning for real: two ``pipelines.tune`` workers share one study on a throwaway PostgreSQL.

The server is started from the machine's own binaries (initdb / pg_ctl) in a temporary folder,
as an unprivileged user when the tests run as root (postgres refuses root). Skipped, with the
reason, where the binaries or the driver are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from pipelines.runtime.storage import normalise_url
from tests.conftest import ROOT, make_battles

STUDY = "shared"


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()],
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(uid: int | None, gid: int | None):
    if uid is None:
        return None

    def drop() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return drop


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver (psycopg2-binary) is not installed")
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql")
    uid = gid = None
    if os.geteuid() == 0:  # postgres refuses to run as root: the server (only) runs as "nobody"
        try:
            user = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no unprivileged 'nobody' user to run postgres as")
        uid, gid = user.pw_uid, user.pw_gid
    base = Path(tempfile.mkdtemp(prefix="arena_pg_"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if uid is not None:
        os.chmod(base, 0o755)
        for p in (base, sock):
            os.chown(p, uid, gid)
    preexec = _as_user(uid, gid)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "arena", "--no-sync", "-E", "UTF8"],
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        env=env,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed here: {init.stderr.strip()[-300:]}")
    port = _free_port()
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    start = subprocess.run(
        [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start"],
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        env=env,
    )
    if start.returncode != 0:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {start.stderr.strip()} {log[-500:]}")
    try:
        yield f"postgresql://arena@127.0.0.1:{port}"  # the README's form: no driver named
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            preexec_fn=preexec,
            capture_output=True,
            env=env,
        )
        shutil.rmtree(base, ignore_errors=True)


def _new_database(server: str, name: str) -> str:
    """A fresh, empty database on the throwaway server; its URL."""
    import psycopg2

    host_port = server.split("@", 1)[1]
    host, port = host_port.split(":")
    conn = psycopg2.connect(host=host, port=int(port), user="arena", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{server}/{name}"


def _open_storage(url: str, queue) -> None:
    from pipelines.runtime.storage import rdb_storage

    try:
        rdb_storage(url)
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        queue.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_workers_creating_the_schema_at_once_all_succeed(postgres_url):
    """The race two fresh workers hit (CREATE TYPE studydirection: UniqueViolation) is retried away."""
    import multiprocessing

    url = _new_database(postgres_url, "race")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_storage, args=(url, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok"] * 3
    assert optuna.study.get_all_study_summaries(normalise_url(url)) == []  # the schema is there, and usable


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pgdata")
    make_battles(120, seed=3).to_csv(d / "train.csv", index=False)
    make_battles(20, seed=4, labelled=False, start_id=90000).to_csv(d / "test.csv", index=False)
    return d


def _worker(data: Path, out: Path, url: str, n_trials: int, sampler_seed: int) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "pipelines.tune",
        "--train", str(data / "train.csv"), "--test", str(data / "test.csv"), "--out", str(out),
        "--storage", url, "--study", STUDY, "--n-trials", str(n_trials), "--sampler-seed", str(sampler_seed),
        "--seed", "7", "--folds", "3", "--num-boost-round", "30", "--early-stopping-rounds", "5",
        "--num-threads", "1", "--n-jobs", "1", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_two_workers_share_one_study_and_a_resumed_worker_continues(postgres_url, data, tmp_path):
    postgres_url = _new_database(postgres_url, "tuning")  # fresh: both workers race to create the schema
    t0 = time.perf_counter()
    workers = [_worker(data, tmp_path / f"w{i}", postgres_url, 2, sampler_seed=100 + i) for i in range(2)]
    outputs = [_finish(w) for w in workers]
    both_s = time.perf_counter() - t0

    study = optuna.load_study(study_name=STUDY, storage=normalise_url(postgres_url))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(study.trials) == 4 and len(finished) == 4  # 2 + 2: every trial of both workers, none lost
    assert sorted(t.number for t in study.trials) == list(range(4))  # numbered by the shared database
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # the seeds did not collide
    assert "baseline" in study.user_attrs and "setup" in study.user_attrs
    for out in (tmp_path / "w0", tmp_path / "w1"):
        assert (out / "best_params.json").exists()
    assert all("trial(s) so far" in o for o in outputs)

    before = [(t.number, t.params, t.value) for t in study.trials]
    _finish(_worker(data, tmp_path / "w0", postgres_url, 1, sampler_seed=100))
    study = optuna.load_study(study_name=STUDY, storage=normalise_url(postgres_url))
    assert len(study.trials) == 5
    assert [(t.number, t.params, t.value) for t in study.trials[:4]] == before  # earlier trials kept as they were
    new = [t.params for t in study.trials[4:]]
    assert all(p not in [b[1] for b in before] for p in new)  # continued, not replayed
    print(f"two workers x 2 trials on PostgreSQL: {both_s:.1f} s; total {time.perf_counter() - t0:.1f} s")
