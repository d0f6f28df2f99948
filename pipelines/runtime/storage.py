"""Open an Optuna RDB storage that several workers may create at the same moment.

Optuna creates its tables (and, on PostgreSQL, enum types) on first use; two workers starting
together on a fresh database race on ``CREATE TYPE`` and one dies with a UniqueViolation. The
loser's retry finds the schema in place and goes on.

Every running trial sends a heartbeat; a trial whose worker died (SIGKILL, lost machine) stops
beating and is marked FAIL by the next worker's ``optimize`` after ``2 x`` the interval, instead of
sitting in RUNNING forever. ``ARENA_PREF_HEARTBEAT_S`` sets the interval (default 60 s).

A URL without a driver (``postgresql://user@host/db``, as the README writes it) is given the driver that
is installed (:func:`normalise_url`): SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while
requirements.txt installs psycopg2, so the README's URL would fail on a fresh install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import time
import warnings

import optuna

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "ARENA_PREF_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 60


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
        return url  # pipelines.stages.preflight.check_storage_url says what is wrong with it
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


def rdb_storage(url: str, attempts: int = 6) -> optuna.storages.BaseStorage:
    """``optuna.storages.RDBStorage(url)``, retried (with jitter) when a concurrent creator wins the race."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    url = normalise_url(url)
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
