"""Wall time and memory per named stage: the fit and the run both time their stages, and the model must not
import report code to do it."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def peak_rss_mib() -> float:
    """The largest resident memory this process has held so far (its high-water mark), in MiB."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(value / 2**20 if sys.platform == "darwin" else value / 1024, 1)


class StageTimer:
    """Wall time per named stage, in order, and the process's peak memory at the end of each (a high-water
    mark: the stage that raised it is the first whose figure is higher than the one before)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mib: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - start)

    def record(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name`` (for a part of a stage timed by the code that ran it)."""
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)
        self.peak_rss_mib[name] = peak_rss_mib()
