"""Benchmark scripts, run as ``python benchmarks/<name>.py``: each puts the repo root on ``sys.path`` first."""
