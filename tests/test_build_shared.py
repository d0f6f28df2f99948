"""``python -m pipelines.build_shared`` on the real shared data beside the checkout (CI has it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from tests.conftest import ROOT

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def shared_data():
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing: CI runs with ../shared beside the checkout")
        pytest.skip(f"{SHARED_DATA} is not beside this checkout")
    return SHARED_DATA


def test_build_shared_runs_on_the_shared_data(shared_data, tmp_path):
    out = tmp_path / "combined.csv"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.build_shared", "--data", str(shared_data), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(out)
    folders = {p.name for p in shared_data.iterdir() if p.is_dir()} - {"arena-snippets-king398"}
    assert set(frame["source"]) == folders
    labels = frame[list(CLASS_COLUMNS)]
    assert all(pd.api.types.is_integer_dtype(labels[c]) for c in CLASS_COLUMNS)
    assert (labels.sum(axis=1) == 1).all()
    assert frame["id"].is_unique
    # the per-source summary names every source with its row count and a tie share in [0, 1]
    for source, rows in frame["source"].value_counts().items():
        line = next(line for line in done.stdout.splitlines() if line.split()[:1] == [source])
        fields = line.split()
        assert int(fields[4]) == rows
        assert 0.0 <= float(fields[5]) <= 1.0
    assert f"{len(frame)} rows -> {out}" in done.stdout
