"""Open an Optuna RDB storage that several workers may create at the same moment.

Optuna creates its tables (and, on PostgreSQL, enum types) on first use; two workers starting
together on a fresh database race on ``CREATE TYPE`` and one dies with a UniqueViolation. The
loser's retry finds the schema in place and goes on.

Every running trial sends a heartbeat; a trial whose worker died (SIGKILL, lost machine) stops
beating and is marked FAIL by the next worker's ``optimize`` after ``2 x`` the interval, instead of
sitting in RUNNING forever. ``ARENA_PREF_HEARTBEAT_S`` sets the interval (default 60 s).
"""

from __future__ import annotations

import logging
import os
import random
import time
import warnings

import optuna

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "ARENA_PREF_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 60


def heartbeat_interval() -> int:
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_HEARTBEAT_S


def rdb_storage(url: str, attempts: int = 6) -> optuna.storages.BaseStorage:
    """``optuna.storages.RDBStorage(url)``, retried (with jitter) when a concurrent creator wins the race."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

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
