"""Training data from several sources: one primary set that is scored, extras that only train.

Why: every human-preference set has its own tie rate (0% to 33%), and sets without ties teach a
model that ties never happen. Keeping the source of every row (and whether that source has ties
at all) is what lets the tie handling in ``stacking.tie_handling`` treat them differently.

    TrainingSource.parse("hh=../hh.csv:0.2")  ->  name "hh", weight 0.2
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, TEXT_COLUMNS, TIE
from pipelines.data.battles import DataError, load_battles, read_battle_csv, winner_columns
from pipelines.formats import convert

log = logging.getLogger(__name__)

COMBINED_COLUMNS = ["id", "source", *TEXT_COLUMNS, *CLASS_COLUMNS]

# Raw sets converted by pipelines.convert; every other folder with a train.csv.gz is read as is.
CONVERTED_SETS = {
    "llmeval2": ("llmeval2", ["LLMEval2_benchmark.json.zip"]),
    "pandalm": ("pandalm", ["testset-v1.json"]),
    "hh-rlhf": (
        "hh-rlhf",
        [
            f"{s}/test.jsonl.gz"
            for s in ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
        ],
    ),
}
SKIPPED_SETS = ("arena-snippets-king398",)  # 100 truncated rows: a smoke fixture, not data

# Sources that share questions, answers or judges with another: held out together and reported as one family
# (a source not listed is its own family). MT-Bench turn 2 holds the turn-1 questions, answers and judges of
# mtbench-human; FairEval's ChatGPT/Vicuna-13B answers are a subset of qlora-vicuna80's.
SOURCE_FAMILIES = {"mtbench-human-turn2": "mtbench-human", "faireval": "qlora-vicuna80"}


def source_families(sources: np.ndarray | pd.Series | list[str]) -> np.ndarray:
    """The family of each row's source (:data:`SOURCE_FAMILIES`; its own name otherwise)."""
    return np.array([SOURCE_FAMILIES.get(str(s), str(s)) for s in sources], dtype=object)


def family_members(sources: np.ndarray | pd.Series | list[str]) -> dict[str, list[str]]:
    """{family: the sources present in it}, for the reports."""
    names = sorted({str(s) for s in sources})
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(SOURCE_FAMILIES.get(name, name), []).append(name)
    return out


class TrainingSourceError(DataError):
    """A training source that cannot be used (a bad spec, the same file twice, ids clashing across files)."""


@dataclass(frozen=True)
class TrainingSource:
    """One training file, the name its rows are tagged with, and the weight of its rows."""

    path: Path
    name: str
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> TrainingSource:
        """``FILE``, ``FILE:weight``, ``NAME=FILE`` or ``NAME=FILE:weight`` (name defaults to the file stem)."""
        name = None
        if "=" in spec and not spec.startswith("="):
            head, rest = spec.split("=", 1)
            if head and "/" not in head and "\\" not in head:
                name, spec = head, rest
        weight = 1.0
        match = re.fullmatch(r"(.*):([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", spec)
        if match and not re.fullmatch(r"[A-Za-z]", match.group(1)):  # "C:..." is a drive, not a weight
            spec, weight = match.group(1), float(match.group(2))
        if not spec or spec.startswith(":"):
            raise TrainingSourceError("training source: empty file name")
        if not (math.isfinite(weight) and weight > 0):  # 1e999 reads as inf; 0 would train on nothing
            raise TrainingSourceError(f"training source {spec}: weight {weight} must be a positive finite number")
        path = Path(spec)
        if name is None:
            name = path.name.split(".")[0] or path.name
        return cls(path=path, name=name, weight=weight)


@dataclass
class TrainingSourcesConfig:
    """Extra training sets and repeated grouped CV (CLI flags of full_run, tune and ablation)."""

    extra_train: tuple[str, ...] = field(
        default=(),
        metadata={"help": "[NAME=]FILE[:WEIGHT]: an extra training set (only trains; never scored)", "cli": False},
    )
    fold_seeds: int = field(
        default=1, metadata={"help": "repeated grouped CV: compare (ablation, tuning) over N fold seeds"}
    )

    def __post_init__(self) -> None:
        if self.fold_seeds < 1:
            raise TrainingSourceError(f"--fold-seeds {self.fold_seeds}: must be >= 1")
        for spec in self.extra_train:
            TrainingSource.parse(spec)  # fail on a bad spec before any work

    @property
    def sources(self) -> list[TrainingSource]:
        return [TrainingSource.parse(spec) for spec in self.extra_train]


def read_source(source: TrainingSource) -> tuple[pd.DataFrame, pd.Series | None]:
    """A training file's battles and its own ``source`` column (a combined file), or None; one read by the
    hardened reader, so a trailing comma, a ``;``/tab delimiter, UTF-16 or gzip tag rows as the clean file does."""
    battles, _ = load_battles(source.path, labelled=True, keep=("source",))
    return battles, pop_own_sources(battles, source.path)


def pop_own_sources(battles: pd.DataFrame, path: str | Path) -> pd.Series | None:
    """The file's own ``source`` column, taken out of ``battles`` (None: no column, or every cell empty).
    An empty cell beside named ones is refused: it would silently become a source of its own."""
    if "source" not in battles.columns:
        return None
    own = battles.pop("source").astype(str).str.strip()
    empty = (own == "").to_numpy()
    if empty.all():
        return None
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        line = int(read_battle_csv(path).lines[row])  # the rare error path reads the file's lines again
        raise TrainingSourceError(
            f"{path}: line {line}, column 'source': empty, while other rows name their source"
            f" ({int(empty.sum())} empty cell(s)); name every row's source, or drop the column"
        )
    return own


def _tag(frame: pd.DataFrame, source: TrainingSource, is_primary: bool, own: pd.Series | None) -> pd.DataFrame:
    frame = frame.copy()
    names = own.to_numpy(dtype=object) if own is not None else np.full(len(frame), source.name, dtype=object)
    names = np.where(names == "", source.name, names)
    frame["source"] = names
    frame["is_primary"] = is_primary
    frame["weight"] = float(source.weight)
    if not is_primary:
        frame["id"] = [f"{s}:{i}" for s, i in zip(names, frame["id"])]
    return frame


def mark_sources_with_ties(frame: pd.DataFrame) -> pd.DataFrame:
    """``source_has_ties``: True for every row of a source where any tie label exists."""
    frame = frame.copy()
    with_ties = set(frame.loc[frame["label"] == TIE, "source"])
    frame["source_has_ties"] = frame["source"].isin(with_ties).to_numpy()
    return frame


def load_training_sources(
    primary: str | Path | TrainingSource,
    extras=(),
    *,
    primary_read: tuple[pd.DataFrame, pd.Series | None] | None = None,
) -> pd.DataFrame:
    """Primary and extra training files as one frame (``pipelines.data.battles.load_battles`` columns plus
    ``source``, ``is_primary``, ``weight``, ``source_has_ties``). Extra ids get a ``source:`` prefix
    so ids stay unique; a file with a ``source`` column (see :func:`combined_shared_data`) keeps
    its own per-row sources. ``primary_read``: the primary file's :func:`read_source`, when already read.
    The same file given twice is refused (its rows would count twice)."""
    primary = primary if isinstance(primary, TrainingSource) else TrainingSource.parse(str(primary))
    extras = [e if isinstance(e, TrainingSource) else TrainingSource.parse(str(e)) for e in extras]
    _refuse_repeated_files([primary, *extras])
    parts = []
    for k, src in enumerate([primary, *extras]):
        battles, own = primary_read if k == 0 and primary_read is not None else read_source(src)
        parts.append(_tag(battles, src, is_primary=k == 0, own=own))
    frame = pd.concat(parts, ignore_index=True)
    dup = frame["id"].duplicated()
    if dup.any():
        raise TrainingSourceError(f"duplicate id {frame['id'][dup].iloc[0]!r} across training sources; rename a source")
    frame = mark_sources_with_ties(frame)
    log.info(
        "training sources: %s",
        ", ".join(f"{s}={n}" for s, n in frame.groupby("source", sort=False).size().items()),
    )
    return frame


def _refuse_repeated_files(sources: list[TrainingSource]) -> None:
    seen: dict[Path, str] = {}
    for k, src in enumerate(sources):
        key = Path(src.path).resolve()
        what = "--train" if k == 0 else f"--extra-train {src.path}"
        if key in seen:
            raise TrainingSourceError(f"{what}: the same file as {seen[key]}; give each training file once")
        seen[key] = what


def combined_shared_data(data_dir: str | Path) -> pd.DataFrame:
    """Every human-preference set under ``data_dir`` in the train.csv schema plus ``source``
    (the folder name); ids are ``folder:original id``. The arena smoke snippets are skipped."""
    data_dir = Path(data_dir)
    parts = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        name = folder.name
        if name in SKIPPED_SETS:
            continue
        if name in CONVERTED_SETS:
            fmt, files = CONVERTED_SETS[name]
            frame = convert(fmt, [folder / f for f in files])
        elif (folder / "train.csv.gz").exists():
            table = read_battle_csv(folder / "train.csv.gz")
            frame = table.frame.copy()
            frame[list(CLASS_COLUMNS)] = winner_columns(frame, str(folder / "train.csv.gz"), table.lines)
        else:
            log.info("combined data: %s has no known layout, skipped", folder)
            continue
        frame = frame.copy()
        frame["id"] = [f"{name}:{i}" for i in frame["id"]]
        frame["source"] = name
        parts.append(frame[COMBINED_COLUMNS])
    if not parts:
        raise ValueError(f"{data_dir}: no data sets found")
    return pd.concat(parts, ignore_index=True)
