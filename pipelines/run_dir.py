"""A run directory stays consistent whatever kills a run: files appear whole or not at all, and
one run at a time writes into it.

Every file is written to a temporary name in the same directory and moved over the final name
with ``os.replace`` (atomic on POSIX), so a reader never sees half a submission and a killed run
leaves its old files, not torn ones. A temporary file a killed run left behind is named after
its process id and swept at the next run's start. ``hold_run_dir`` takes an exclusive
``flock`` on ``<dir>/.lock``; the kernel drops it when the holder dies, even by SIGKILL, so a
crash never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd

from pipelines.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


class RunDirError(UserError):
    """The run directory cannot be written (disk full, read-only, another run holds it)."""


def temp_path(path: Path) -> Path:
    """``.<name>.<pid>.<uuid>.tmp`` next to ``path``: same file system (so ``os.replace`` is atomic),
    hidden, unique per writer, and attributable to a process for :func:`sweep_stale_temps`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(temp)`` then ``os.replace(temp, path)``; on any failure the temp file is removed and
    ``path`` is left as it was. An ``OSError`` (disk full, read-only) becomes one clear line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:  # on disk before the rename, so a power cut cannot publish an empty file
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise RunDirError(
            f"cannot write {path}: {what}; nothing was written (the previous file, if any, is kept)"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_with(mode: str, payload: str | bytes, encoding: str | None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        handle: IO
        with open(tmp, mode, encoding=encoding) as handle:
            handle.write(payload)

    return write


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(path, _write_with("w", text, encoding))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, _write_with("wb", data, None))


def atomic_to_csv(frame: pd.DataFrame, path: str | Path, **to_csv_kwargs) -> Path:
    """``frame.to_csv(path, **kwargs)``, atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, **to_csv_kwargs))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_temps(directory: str | Path) -> list[Path]:
    """Remove temporary files (:func:`temp_path`) whose writer is no longer running."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMP.match(entry.name)
        if match and entry.is_file() and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) left by a killed run in %s", len(removed), directory)
    return removed


@contextmanager
def hold_run_dir(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory`` for this run alone; a second run on it stops at once with one line."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise RunDirError(f"cannot use run directory {directory}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirError(
                f"{directory} is in use by another run ({holder}); wait for it, or give another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        sweep_stale_temps(directory)
        yield directory
    finally:
        handle.close()  # releases the lock
