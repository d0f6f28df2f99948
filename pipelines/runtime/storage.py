"""Open an Optuna RDB storage that several workers may create at the same moment.

Optuna creates its tables (and, on PostgreSQL, enum types) on first use; two workers starting
together on a fresh database race on ``CREATE TYPE`` and one dies with a UniqueViolation. The
loser's retry finds the schema in place and goes on.

Every running trial sends a heartbeat; a trial whose worker died (SIGKILL, lost machine) stops
beating and is marked FAIL by the next worker's ``optimize`` after ``2 x`` the interval, instead of
sitting in RUNNING forever. ``ARENA_PREF_HEARTBEAT_S`` sets the interval (default 60 s). A worker on
the same machine need not wait for that: each trial records its worker (:func:`worker_identity`), and
one whose process is gone is :func:`known_dead` at once.

The database is connected to once before anything else (:func:`check_connection`): an unreachable
server is one line (:class:`StorageError`) before any feature is computed, not a retried traceback after.

A URL without a driver (``postgresql://user@host/db``, as the README writes it) is given the driver that
is installed (:func:`normalise_url`): SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while
requirements.txt installs psycopg2, so the README's URL would fail on a fresh install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from pipelines.runtime.errors import UserError
from pipelines.runtime.run_dir import process_alive

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "ARENA_PREF_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 60
CONNECT_TIMEOUT_S = 10  # a server that never answers (dropped packets) fails in this time, not the OS's minutes


class StorageError(UserError, ValueError):
    """The Optuna storage cannot be reached (server down, wrong port, bad credentials) or was lost."""


def shown_url(url: str) -> str:
    """The URL as it may be printed: no user or password (as ``pipelines.preflight`` shows it)."""
    return url.split("@")[-1]


# SQLAlchemy driver names per database, preferred first, with the module each one imports
DRIVERS = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("mysqldb", "MySQLdb"), ("pymysql", "pymysql")),
}


def normalise_url(url: str) -> str:
    """``url`` with its database's installed driver named when it names none (``postgresql://`` ->
    ``postgresql+psycopg2://`` where only psycopg2 is installed); any other URL unchanged."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # pipelines.preflight.check_storage_url says what is wrong with it
    backend = parsed.get_backend_name()
    if "+" in parsed.drivername or backend not in DRIVERS:
        return url
    for driver, module in DRIVERS[backend]:
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)
    return url


def heartbeat_interval() -> int:
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_HEARTBEAT_S


def check_connection(url: str) -> None:
    """Connect once, so that an unreachable database is one line before any work, not a retried traceback."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError

    url = normalise_url(url)
    timeout = {} if url.startswith("sqlite") else {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    engine = create_engine(url, **timeout)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise StorageError(f"storage {shown_url(url)!r}: cannot connect ({reason(exc)})") from exc
    finally:
        engine.dispose()


def reason(exc: Exception) -> str:
    """The driver's own first line (``Connection refused``, ``password authentication failed``)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A database error while the study runs (server stopped, connection dropped) as one line; the trials
    finished before it are in the storage, so a rerun resumes."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        raise StorageError(
            f"storage {shown_url(url)!r}: lost the database ({reason(exc)}); the finished trials are kept in it: "
            "rerun to resume"
        ) from exc


def rdb_storage(url: str, attempts: int = 6) -> optuna.storages.BaseStorage:
    """``optuna.storages.RDBStorage(url)``, retried (with jitter) when a concurrent creator wins the race.
    An unreachable database fails at once (:class:`StorageError`): retrying a refused connection helps nobody."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    url = normalise_url(url)
    check_connection(url)
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, stable since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat_interval()
                )
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            if attempt == attempts - 1:
                raise
            wait = 0.2 * (attempt + 1) + random.random() * 0.3
            log.info(
                "storage %s: schema being created by another worker (%s); retrying in %.1f s",
                url.split("@")[-1],
                type(exc).__name__,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- trials of killed workers


def worker_identity() -> dict:
    """This process as a trial records it: enough for a later worker on the same machine to tell that it died."""
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def known_dead(worker: dict) -> bool:
    """True only when ``worker`` ran on this machine since its last boot and its process is gone (or its pid
    now belongs to a process started at another time); False whenever that cannot be known."""
    if worker.get("host") != socket.gethostname() or worker.get("boot") != _boot_id():
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if not process_alive(pid):
        return True
    started = worker.get("started")
    return started is not None and _start_ticks(pid) not in (None, started)


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22): a reused pid differs."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
