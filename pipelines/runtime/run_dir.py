"""A run directory stays consistent whatever kills a run: files appear whole or not at all, the
files that belong together (submission, model, report) change together, and one run at a time
writes into it.

Every file is written to a temporary name in the same directory and moved over the final name
with ``os.replace`` (atomic on POSIX), so a reader never sees half a submission and a killed run
leaves its old files, not torn ones. A temporary file a killed run left behind is named after
its process id and swept at the next run's start. ``hold_run_dir`` takes an exclusive
``flock`` on ``<dir>/.lock``; the kernel drops it when the holder dies, even by SIGKILL, so a
crash never leaves a stale lock.

:func:`staged_outputs` stages a run's published files next to their targets and swaps them in at
the end: the old ones are moved aside, the new ones moved in, the old ones removed. A journal
(``<dir>/.commit.json``) records the swap, so a failure halfway (in this process, or a kill seen
by the next run) is rolled back to the previous set, or forward once every new file is in place.
Cleanup is best effort and logged: it never hides the error that made it necessary.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd

from pipelines.runtime.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


class RunDirError(UserError, ValueError):
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
        remove_quietly(tmp)
        raise RunDirError(
            f"cannot write {path}: {why(exc)}; nothing was written (the previous file, if any, is kept)"
        ) from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


def why(exc: OSError) -> str:
    return "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))


def remove_quietly(path: Path) -> None:
    """Remove a file or folder if it is there; a failure is logged, never raised (cleanup runs while
    another error is on its way, and must not replace it)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc.strerror or exc)


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


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (someone else's counts as running)."""
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
        if match and not process_alive(int(match["pid"])):
            remove_quietly(entry)
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
        recover_commit(directory)  # before the sweep: a killed swap's backups are temporaries too
        sweep_stale_temps(directory)
        yield directory
    finally:
        handle.close()  # releases the lock


# --------------------------------------------------------------------------- publishing a set of files together

JOURNAL = ".commit.json"


class StagedOutputs:
    """Paths to write a run's outputs to (``path(name)``), each a temporary next to its target."""

    def __init__(self, journal_dir: Path, targets: Mapping[str, Path]):
        self.journal = Path(journal_dir) / JOURNAL
        self.targets = {name: Path(t) for name, t in targets.items()}
        self.staged = {name: temp_path(t) for name, t in self.targets.items()}

    def path(self, name: str) -> Path:
        return self.staged[name]

    def discard(self) -> None:
        for staged in self.staged.values():
            remove_quietly(staged)

    def commit(self) -> None:
        """Swap every staged output that was written in for its target, all or none."""
        entries: list[dict[str, Any]] = [
            {"target": str(t), "staged": str(self.staged[n]), "backup": str(temp_path(t)) if t.exists() else None}
            for n, t in self.targets.items()
            if self.staged[n].exists()
        ]
        try:
            _write_journal(self.journal, entries, "swapping")
        except RunDirError:
            self.discard()
            raise
        try:
            for e in entries:
                if e["backup"]:
                    os.replace(e["target"], e["backup"])
                os.replace(e["staged"], e["target"])
            _write_journal(self.journal, entries, "swapped")
        except (OSError, RunDirError) as exc:
            _roll_back(entries)
            remove_quietly(self.journal)
            self.discard()
            reason = why(exc) if isinstance(exc, OSError) else str(exc)
            raise RunDirError(
                f"cannot put the run's files in place ({reason}); the previous submission, model and report are kept"
            ) from exc
        _finish(entries)
        remove_quietly(self.journal)


@contextmanager
def staged_outputs(journal_dir: str | Path, targets: Mapping[str, Path]) -> Iterator[StagedOutputs]:
    """Write into ``stage.path(name)`` inside the block; on leaving it every file written replaces its
    target together. An error inside leaves every target as it was and no staged file behind (an
    ``OSError``, e.g. disk full, becomes one :class:`RunDirError` line)."""
    stage = StagedOutputs(Path(journal_dir), targets)
    try:
        yield stage
    except RunDirError as exc:  # a file could not be written: named by its target, not its staged name
        stage.discard()
        text = str(exc)
        for name, staged in stage.staged.items():
            text = text.replace(str(staged), str(stage.targets[name]))
        raise RunDirError(text) from exc
    except OSError as exc:
        stage.discard()
        raise RunDirError(
            f"cannot write the run's files ({why(exc)}); nothing was replaced: the previous submission, model"
            " and report are kept"
        ) from exc
    except BaseException:
        stage.discard()
        raise
    stage.commit()


def _write_journal(path: Path, entries: list[dict], state: str) -> None:
    atomic_write_text(path, json.dumps({"pid": os.getpid(), "state": state, "entries": entries}))


def _roll_back(entries: list[dict]) -> None:
    """Each target back to its previous file (or to nothing when it had none)."""
    for e in reversed(entries):
        target, staged = Path(e["target"]), Path(e["staged"])
        backup = Path(e["backup"]) if e["backup"] else None
        if backup is not None and backup.exists():
            if target.exists():
                remove_quietly(target)  # the new one, already moved in
            try:
                os.replace(backup, target)
            except OSError as exc:
                log.error("could not restore %s from %s: %s", target, backup, exc.strerror or exc)
        elif backup is None and not staged.exists() and target.exists():
            remove_quietly(target)  # the new one of a target that had none
        remove_quietly(staged)


def _finish(entries: list[dict]) -> None:
    for e in entries:
        if e["backup"]:
            remove_quietly(Path(e["backup"]))


def recover_commit(directory: str | Path) -> None:
    """Complete or undo a swap that a killed run left half done (its journal is still there)."""
    path = Path(directory) / JOURNAL
    if not path.exists():
        return
    try:
        journal = json.loads(path.read_text())
        entries, state = journal["entries"], journal["state"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); left as it is", path, exc)
        return
    if state == "swapped":
        _finish(entries)
        log.info("finished the swap of a run killed after putting its files in place")
    else:
        _roll_back(entries)
        log.warning("a run was killed while putting its files in place: the previous files were restored")
    remove_quietly(path)
