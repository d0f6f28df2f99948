"""Open an Optuna RDB storage that several workers may create at the same moment.

Optuna creates its tables (and, on PostgreSQL, enum types) on first use; two workers starting
together on a fresh database race on ``CREATE TYPE`` and one dies with a UniqueViolation. The
loser's retry finds the schema in place and goes on.
"""

from __future__ import annotations

import logging
import random
import time

import optuna

log = logging.getLogger(__name__)


def rdb_storage(url: str, attempts: int = 6) -> optuna.storages.BaseStorage:
    """``optuna.storages.RDBStorage(url)``, retried (with jitter) when a concurrent creator wins the race."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
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
