"""Where data lives: Kaggle's layout is discovered, local paths come from arguments.

``ARENA_PREF_KAGGLE_ROOT`` overrides ``/kaggle`` (tests build a fake layout there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.runtime.errors import UsageError, UserError

COMPETITION_SLUGS = ("llm-classification-finetuning", "lmsys-chatbot-arena")
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


@dataclass(frozen=True)
class DataPaths:
    train: Path
    test: Path
    out_dir: Path
    submission: Path
    on_kaggle: bool = False


def kaggle_root() -> Path:
    return Path(os.environ.get("ARENA_PREF_KAGGLE_ROOT", "/kaggle"))


class KaggleInputError(UserError, ValueError):
    """On Kaggle (``/kaggle/input`` exists) but the competition data is not attached."""


def find_competition_dir(input_dir: Path) -> Path | None:
    """The competition folder under /kaggle/input, by its known names only (also under
    ``competitions/``): any other dataset with a train.csv is not the competition's data."""
    if not input_dir.is_dir():
        return None
    for slug in COMPETITION_SLUGS:
        for candidate in (input_dir / slug, input_dir / "competitions" / slug):
            if (candidate / "train.csv").is_file() and (candidate / "test.csv").is_file():
                return candidate
    return None


def describe_inputs(input_dir: Path, limit: int = 30) -> str:
    """The folders under /kaggle/input (and one level below), for the error that says what was found."""
    found = []
    for top in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        children = sorted(c.name for c in top.iterdir())[:6]
        found.append(f"{top.name}/ [{', '.join(children)}]" if children else f"{top.name}/ (empty)")
    if not found:
        return "nothing"
    more = f" ... and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def require_competition_dir(input_dir: Path) -> Path:
    competition = find_competition_dir(input_dir)
    if competition is None:
        names = " or ".join(f"{input_dir}/{s}" for s in COMPETITION_SLUGS)
        raise KaggleInputError(
            f"{input_dir}: no competition data ({names}, also under competitions/, with train.csv and "
            f"test.csv); found: {describe_inputs(input_dir)}. Attach the competition, or pass --train and --test"
        )
    return competition


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


def find_model_inputs(input_dir: Path) -> list[Path]:
    """Model folders and ``.gguf`` files attached as Kaggle inputs (a GGUF file is converted on first load)."""
    if not input_dir.is_dir():
        return []
    return sorted([*find_model_dirs(input_dir), *(p for p in input_dir.glob("**/*.gguf") if p.is_file())])


def is_decoder_input(path: Path) -> bool:
    """A decoder LLM (a .gguf file, or a folder whose config.json says causal LM / a decoder model type)."""
    from encoders.model import DECODER_TYPES

    if path.suffix.lower() == ".gguf":
        return True
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") or []
    return config.get("model_type") in DECODER_TYPES or any(str(a).endswith("ForCausalLM") for a in archs)


def training_order(found: list[Path]) -> list[Path]:
    """Encoders before decoder LLMs: the cheap models get the budget first, an LLM what is left (its probe
    leaves it out when its folds would not fit)."""
    return sorted(found, key=lambda p: (is_decoder_input(p), str(p)))


def resolve_paths(train: str | None, test: str | None, out: str | None) -> DataPaths:
    """Arguments win; else, on Kaggle (``/kaggle/input`` exists), the competition's data or a
    :class:`KaggleInputError`; off Kaggle, the bundled sample."""
    root = kaggle_root()
    if train is None and test is None:
        if (root / "input").is_dir():
            competition = require_competition_dir(root / "input")
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
        raise UsageError("give both --train and --test, or neither (Kaggle discovery / bundled sample)")
    else:
        train_path, test_path = Path(train), Path(test)
    out_dir = Path(out) if out else Path("outputs") / "run"
    return DataPaths(train_path, test_path, out_dir, out_dir / "submission.csv")
