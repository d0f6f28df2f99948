"""Turn battles (parsed turn lists) into a numeric feature frame, in parallel and cached.

Input: a DataFrame with ``prompt_turns``, ``a_turns``, ``b_turns`` (lists of str).
Output: a float32 DataFrame, one row per battle in input order, columns following the A/B
convention of :mod:`features.symmetry`. Work per row is bounded, so time and memory are
linear in rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from joblib import Parallel, delayed, effective_n_jobs
from tqdm.auto import tqdm

from arena_schema import check_swappable
from features.groups import DEFAULT_GROUPS, GROUPS, TextView

log = logging.getLogger(__name__)

FEATURE_VERSION = "1"  # bump when any group's output changes: invalidates caches
FEATURE_SOURCES = Path(__file__).resolve().parent  # the code that defines every group's values
TURN_COLUMNS = ("prompt_turns", "a_turns", "b_turns")


def battle_features(
    prompt_turns: list[str], a_turns: list[str], b_turns: list[str], groups: Sequence[str]
) -> dict[str, float]:
    """All requested groups' features of one battle."""
    prompt, a, b = (TextView.from_turns(t) for t in (prompt_turns, a_turns, b_turns))
    row: dict[str, float] = {}
    for name in groups:
        group = GROUPS[name]
        sa, sb = group.side(a, prompt), group.side(b, prompt)
        for key, va in sa.items():
            vb = sb[key]
            row[f"a_{key}"] = va
            row[f"b_{key}"] = vb
            row[f"diff_{key}"] = va - vb
            if key in group.ratio_keys:
                row[f"logratio_{key}"] = math.log1p(va) - math.log1p(vb)
        if group.pair is not None:
            row.update(group.pair(a, b, prompt))
    return row


def _features_chunk(rows: list[tuple[list[str], list[str], list[str]]], groups: Sequence[str]) -> list[dict]:
    return [battle_features(p, a, b, groups) for p, a, b in rows]


def _features_matrix(
    rows: list[tuple[list[str], list[str], list[str]]], groups: Sequence[str]
) -> tuple[tuple[str, ...], np.ndarray] | list[dict]:
    """One chunk's features as (sorted column names, float32 rows x columns): a small fraction of
    the memory and pickling of per-row dicts (whose keys are fresh strings in every row). Falls
    back to the dicts if rows disagree on their keys."""
    records = _features_chunk(rows, groups)
    if not records:
        return records
    columns = sorted(records[0])
    if any(len(r) != len(columns) for r in records):
        return records
    try:
        values = [[r[c] for c in columns] for r in records]
    except KeyError:
        return records
    # Python ints/floats -> float64 is exact here (counts are far below 2**53), so the float32
    # cast rounds each value exactly as pandas' int64/float64 -> float32 cast of the records did
    return tuple(columns), np.array(values, dtype=np.float64).astype(np.float32)


def definition_hash(sources: Path | None = None) -> str:
    """Hash of the feature code (every ``*.py`` under ``features/``) and the readability library's version.

    Why: a cache keyed on the group names alone hands back stale values after a group's code changes and
    nobody bumped :data:`FEATURE_VERSION`; the bundle's fingerprint would refuse the model at load, but a
    run would already have trained on the stale values. Reading ~15 small files costs about a millisecond."""
    from importlib.metadata import PackageNotFoundError, version

    folder = FEATURE_SOURCES if sources is None else sources
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        h.update(path.name.encode() + b"\x1f" + path.read_bytes() + b"\x1e")
    try:
        h.update(version("textstat").encode())
    except PackageNotFoundError:  # pragma: no cover - a requirement
        h.update(b"no textstat")
    return h.hexdigest()[:16]


def content_hash(battles: pd.DataFrame, groups: Iterable[str]) -> str:
    """Hash of the texts, their order and the feature definition (version, groups, code): the cache key."""
    h = hashlib.sha256(f"v{FEATURE_VERSION}|{definition_hash()}|{','.join(sorted(groups))}|".encode())
    for row in battles[list(TURN_COLUMNS)].itertuples(index=False):
        for turns in row:
            for turn in turns:
                h.update(turn.encode("utf-8", "surrogatepass"))
                h.update(b"\x1f")
            h.update(b"\x1e")
    return h.hexdigest()[:20]


def row_ids(battles: pd.DataFrame) -> list[str]:
    """The battles' ids (positions when there is no ``id`` column): stored with cached features."""
    if "id" in battles:
        return [str(i) for i in battles["id"].tolist()]
    return [str(i) for i in range(len(battles))]


def values_hash(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float32)).tobytes())
    return h.hexdigest()


class FeatureCache:
    """One parquet file of features that proves what it holds.

    The file stores the cache key, the row ids and a hash of its values; a file that cannot be
    read, or whose key, ids or values disagree, is ignored and rebuilt. Writes go to a temporary
    name unique to the process (pid + uuid) and are moved in place with ``os.replace``, so two runs
    never mix their bytes; a failed write (disk full) leaves nothing behind and the run goes on.
    """

    META = b"arena_pref_features"
    ID_COLUMN = "__row_id__"

    def __init__(self, path: Path, key: str, ids: list[str]):
        self.path, self.key, self.ids = Path(path), key, ids

    def read(self) -> pd.DataFrame | None:
        if not self.path.exists():
            return None
        try:
            frame = self._read_checked()
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a cache miss, never a failed run
            log.warning("features: cache %s is unusable (%s); rebuilding it", self.path, exc)
            self._remove(self.path)
            return None
        log.info("features: cache hit %s", self.path)
        return frame

    def _read_checked(self) -> pd.DataFrame:
        table = pq.read_table(self.path)
        meta = json.loads((table.schema.metadata or {}).get(self.META, b"null"))
        if not isinstance(meta, dict):
            raise ValueError("no arena-pref metadata")
        if meta.get("key") != self.key:
            raise ValueError(f"made for other battles (key {meta.get('key')!r}, expected {self.key!r})")
        if table.column(self.ID_COLUMN).to_pylist() != self.ids:
            raise ValueError("row ids differ from the battles'")
        frame = table.drop([self.ID_COLUMN]).to_pandas()
        if values_hash(frame) != meta.get("values_sha256"):
            raise ValueError("values do not match their stored hash (corrupt or edited)")
        return frame

    def write(self, frame: pd.DataFrame) -> bool:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            plain = frame.reset_index(drop=True)
            table = pa.Table.from_pandas(plain, preserve_index=False)
            table = table.append_column(self.ID_COLUMN, pa.array(self.ids, type=pa.string()))
            meta = {"key": self.key, "rows": len(plain), "values_sha256": values_hash(plain)}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), self.META: json.dumps(meta)})
            pq.write_table(table, tmp)
            os.replace(tmp, self.path)
        except OSError as exc:
            self._remove(tmp)
            log.warning("features: could not write cache %s (%s); going on without caching", self.path, exc)
            return False
        log.info("features: cached %s", self.path)
        return True

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


class FeatureExtractor:
    """Computes the chosen feature groups; ``n_jobs`` worker processes over row chunks."""

    def __init__(
        self,
        groups: Sequence[str] | None = None,
        n_jobs: int = 2,
        chunk_size: int = 1000,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ):
        self.groups = tuple(groups) if groups is not None else DEFAULT_GROUPS
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown feature group(s) {unknown}; known: {list(GROUPS)}")
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in TURN_COLUMNS if c not in battles]
        if missing:
            raise ValueError(f"battles lack column(s) {missing}")
        if self.cache_dir is None:
            return self._compute(battles)
        key = content_hash(battles, self.groups)
        cache = FeatureCache(self.cache_dir / f"features_{key}.parquet", key, row_ids(battles))
        cached = cache.read()
        if cached is not None:
            cached.index = battles.index
            return cached
        frame = self._compute(battles)
        cache.write(frame)
        return frame

    def _compute(self, battles: pd.DataFrame) -> pd.DataFrame:
        rows = list(zip(*(battles[c].tolist() for c in TURN_COLUMNS)))
        n_jobs = effective_n_jobs(self.n_jobs)
        size = self.chunk_size
        if n_jobs > 1 and len(rows) > size:
            # at least 4 chunks per worker, so that no worker idles while another finishes a big one
            size = max(1, min(size, math.ceil(len(rows) / (4 * n_jobs))))
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        log.info("features: %d rows, groups %s, %d job(s)", len(rows), ",".join(self.groups), self.n_jobs)
        bar = tqdm(total=len(rows), desc="features", unit="row", disable=not self.progress)
        parts: list = []
        if n_jobs == 1 or len(chunks) == 1:
            for chunk in chunks:
                parts.append(_features_matrix(chunk, self.groups))
                bar.update(len(chunk))
        else:
            parallel = Parallel(n_jobs=self.n_jobs, return_as="generator")
            for chunk, result in zip(chunks, parallel(delayed(_features_matrix)(c, self.groups) for c in chunks)):
                parts.append(result)
                bar.update(len(chunk))
        bar.close()
        frame = _assemble(parts, battles.index)
        check_swappable(list(frame.columns))
        return frame


def _assemble(parts: list, index: pd.Index) -> pd.DataFrame:
    """Stack chunk results into one float32 frame with sorted columns."""
    matrices = [p for p in parts if isinstance(p, tuple)]
    if matrices and len(matrices) == len(parts) and all(cols == matrices[0][0] for cols, _ in matrices):
        columns = list(matrices[0][0])
        values = np.concatenate([v for _, v in matrices]) if len(matrices) > 1 else matrices[0][1]
        parts.clear()  # the chunks' copies are in ``values`` now
        del matrices
        return pd.DataFrame(values, index=index, columns=columns)
    records: list[dict] = []  # rows disagree on their keys (or no rows): pandas aligns them
    for p in parts:
        records.extend([dict(zip(p[0], row)) for row in p[1].tolist()] if isinstance(p, tuple) else p)
    frame = pd.DataFrame.from_records(records, index=index).astype(np.float32)
    return frame[sorted(frame.columns)]


_GROUP_COLUMNS: dict[str, frozenset[str]] = {}


def _columns_of_group(name: str) -> frozenset[str]:
    if name not in _GROUP_COLUMNS:
        _GROUP_COLUMNS[name] = frozenset(battle_features(["p"], ["a"], ["b"], [name]))
    return _GROUP_COLUMNS[name]


def group_columns(columns: Iterable[str]) -> dict[str, list[str]]:
    """Partition feature columns by group; columns of no group (e.g. encoder sources) are left out."""
    out: dict[str, list[str]] = {}
    for col in columns:
        for name in GROUPS:
            if col in _columns_of_group(name):
                out.setdefault(name, []).append(col)
                break
    return out
