"""Where data lives: Kaggle's layout is discovered, local paths come from arguments.

``ARENA_PREF_KAGGLE_ROOT`` overrides ``/kaggle`` (tests build a fake layout there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

COMPETITION_SLUGS = ("llm-classification-finetuning", "lmsys-chatbot-arena")
SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"


@dataclass(frozen=True)
class DataPaths:
    train: Path
    test: Path
    out_dir: Path
    submission: Path
    on_kaggle: bool = False


def kaggle_root() -> Path:
    return Path(os.environ.get("ARENA_PREF_KAGGLE_ROOT", "/kaggle"))


def find_competition_dir(input_dir: Path) -> Path | None:
    """The competition folder under /kaggle/input: a known slug first, else any folder with both CSVs."""
    if not input_dir.is_dir():
        return None
    for slug in COMPETITION_SLUGS:
        for candidate in (input_dir / slug, input_dir / "competitions" / slug):
            if (candidate / "train.csv").exists() and (candidate / "test.csv").exists():
                return candidate
    for train in sorted(input_dir.glob("**/train.csv")):
        if (train.parent / "test.csv").exists():
            return train.parent
    return None


def find_model_dirs(input_dir: Path) -> list[Path]:
    """Hugging Face model folders attached as Kaggle inputs, recognised by their config.json."""
    if not input_dir.is_dir():
        return []
    return sorted(
        {
            p.parent
            for p in input_dir.glob("**/config.json")
            if any(
                (p.parent / f).exists()
                for f in (
                    "model.safetensors",
                    "pytorch_model.bin",
                    "model.safetensors.index.json",
                    "adapter_config.json",
                )
            )
        }
    )


def resolve_paths(train: str | None, test: str | None, out: str | None) -> DataPaths:
    """Arguments win; else Kaggle's competition data if present; else the bundled sample."""
    root = kaggle_root()
    if train is None and test is None:
        competition = find_competition_dir(root / "input")
        if competition is not None:
            working = Path(out) if out else root / "working"
            return DataPaths(
                competition / "train.csv",
                competition / "test.csv",
                working / "arena_pref_run",
                working / "submission.csv",
                on_kaggle=True,
            )
        train_path, test_path = SAMPLE_DIR / "train.csv", SAMPLE_DIR / "test.csv"
    elif train is None or test is None:
        raise SystemExit("give both --train and --test, or neither (Kaggle discovery / bundled sample)")
    else:
        train_path, test_path = Path(train), Path(test)
    out_dir = Path(out) if out else Path("outputs") / "run"
    return DataPaths(train_path, test_path, out_dir, out_dir / "submission.csv")
