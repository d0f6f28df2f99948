"""How many threads to use: the cores this process may really run on, not ``os.cpu_count()``.

``os.cpu_count()`` counts the host's cores; a container or ``taskset`` may allow fewer (CPU
affinity), and a cgroup quota (v2 ``cpu.max``, v1 ``cfs_quota_us``) may allow fewer still.
LightGBM's OpenMP threads spin while they wait for each other, so more threads than free cores
is not a little slower but catastrophically so (a 600-row fold: 121 s instead of under 1 s on two
busy cores); :func:`lightgbm_threads` therefore also leaves out cores other processes keep busy.

``ARENA_PREF_THREADS=N`` overrides every choice here.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from pipelines.runtime.errors import UsageError

ENV = "ARENA_PREF_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def threads_override() -> int | None:
    """``ARENA_PREF_THREADS`` as a positive int, None when unset."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{ENV}={raw!r}: expected a whole number of threads, 1 or more")
    return value


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (may be fractional), or None when unlimited or unknown."""
    try:
        v2_quota, v2_period = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "200000 100000"
        return None if v2_quota == "max" else int(v2_quota) / int(v2_period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 when unlimited
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: the override, else min(affinity, ceil(cgroup quota)), at least 1."""
    override = threads_override()
    if override is not None:
        return override
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def _cpu_times() -> tuple[float, float] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values[:8]), idle


def busy_cpus(sample_s: float = 0.25) -> float:
    """Cores other processes keep busy now (this process sleeps while it samples ``/proc/stat``).

    Scaled to this process's share when the host has more cores than it may use.
    """
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None:
        return 0.0
    total, idle = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return 0.0
    host = os.cpu_count() or 1
    return (1.0 - idle / total) * host * min(1.0, affinity_cpus() / host)


def lightgbm_threads(sample_s: float = 0.25) -> int:
    """LightGBM threads: the available cores less those other processes keep busy, at least 1."""
    override = threads_override()
    if override is not None:
        return override
    cpus = available_cpus()
    if cpus == 1:
        return 1
    free = cpus - busy_cpus(sample_s)
    return int(min(cpus, max(1, math.floor(free + 0.25))))


def torch_threads() -> int:
    """Intra-op threads for torch (``torch.set_num_threads``)."""
    return available_cpus()


def feature_workers() -> int:
    """Feature-extraction processes (``FeatureExtractor(n_jobs=...)``)."""
    return available_cpus()
