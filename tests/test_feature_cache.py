"""The feature cache: atomic per-process writes, corrupt or mismatched files rebuilt, disk-full survived."""

from __future__ import annotations

import errno
import logging
import multiprocessing

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import extractor as ext
from features.extractor import FeatureCache, FeatureExtractor
from pipelines.data.battles import load_battles_frame
from tests.conftest import make_battles


def _battles(n=30, seed=0, start_id=1000):
    return load_battles_frame(make_battles(n, seed=seed, start_id=start_id), "<frame>", labelled=True)[0]


def _extractor(cache_dir):
    return FeatureExtractor(("length", "formatting"), n_jobs=1, cache_dir=cache_dir, progress=False)


def _only_file(cache_dir):
    files = sorted(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".parquet", files  # no temp files left behind
    return files[0]


def _no_compute(monkeypatch):
    def fail(self, battles):
        raise AssertionError("recomputed although the cache was valid")

    monkeypatch.setattr(FeatureExtractor, "_compute", fail)


def test_second_run_is_a_verified_hit(tmp_path, monkeypatch):
    battles = _battles()
    first = _extractor(tmp_path).transform(battles)
    path = _only_file(tmp_path)
    meta = pq.read_schema(path).metadata[FeatureCache.META]
    assert b"values_sha256" in meta and ext.content_hash(battles, ("length", "formatting")).encode() in meta
    _no_compute(monkeypatch)
    pd.testing.assert_frame_equal(_extractor(tmp_path).transform(battles), first)


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"not parquet at all", lambda b: b""],
    ids=["truncated", "garbage", "empty"],
)
def test_corrupt_file_is_rebuilt(tmp_path, caplog, damage):
    battles = _battles()
    expected = _extractor(tmp_path).transform(battles)
    path = _only_file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger=ext.log.name):
        again = _extractor(tmp_path).transform(battles)
    pd.testing.assert_frame_equal(again, expected)
    assert "unusable" in caplog.text
    assert (
        FeatureCache(path, ext.content_hash(battles, ("length", "formatting")), ext.row_ids(battles)).read() is not None
    )


def test_wrong_cache_of_the_same_shape_is_not_trusted(tmp_path, caplog):
    battles, other = _battles(seed=0), _battles(seed=1)  # same rows and columns, other texts
    expected = _extractor(tmp_path / "a").transform(battles)
    _extractor(tmp_path / "b").transform(other)
    # the other battles' file put under this battles' name (a copied or stale cache)
    _only_file(tmp_path / "b").replace(_only_file(tmp_path / "a"))
    with caplog.at_level(logging.WARNING, logger=ext.log.name):
        pd.testing.assert_frame_equal(_extractor(tmp_path / "a").transform(battles), expected)
    assert "made for other battles" in caplog.text


def test_same_texts_with_other_ids_are_not_trusted(tmp_path, caplog):
    battles = _battles()
    _extractor(tmp_path).transform(battles)
    relabelled = battles.assign(id=[str(int(i) + 1) for i in battles["id"]])
    with caplog.at_level(logging.WARNING, logger=ext.log.name):
        _extractor(tmp_path).transform(relabelled)
    assert "row ids differ" in caplog.text
    path = _only_file(tmp_path)
    assert pq.read_table(path).column(FeatureCache.ID_COLUMN).to_pylist() == relabelled["id"].tolist()


def test_edited_values_are_detected(tmp_path, caplog):
    battles = _battles()
    expected = _extractor(tmp_path).transform(battles)
    path = _only_file(tmp_path)
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.iloc[0, 0] += 1.0  # same key, ids and shape; one value changed
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), path
    )
    with caplog.at_level(logging.WARNING, logger=ext.log.name):
        pd.testing.assert_frame_equal(_extractor(tmp_path).transform(battles), expected)
    assert "stored hash" in caplog.text


def test_disk_full_leaves_no_partial_file_and_goes_on(tmp_path, monkeypatch, caplog):
    battles = _battles()
    expected = _extractor(None).transform(battles)

    def full_disk(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ext.pq, "write_table", full_disk)
    with caplog.at_level(logging.WARNING, logger=ext.log.name):
        got = _extractor(tmp_path).transform(battles)
    pd.testing.assert_frame_equal(got, expected)
    assert list(tmp_path.iterdir()) == []
    assert "going on without caching" in caplog.text


def _worker(cache_dir, queue):
    battles = _battles(n=200)
    frame = _extractor(cache_dir).transform(battles)
    queue.put(frame.to_numpy().tobytes())


def test_two_processes_writing_one_cache_do_not_collide(tmp_path, monkeypatch):
    names = []
    real_replace = ext.os.replace
    monkeypatch.setattr(ext.os, "replace", lambda a, b: (names.append(str(a)), real_replace(a, b)))
    _extractor(tmp_path / "probe").transform(_battles())
    _extractor(tmp_path / "probe2").transform(_battles())
    assert len(set(names)) == 2 and all(f".{ext.os.getpid()}." in n for n in names)  # pid + uuid temp names

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(tmp_path / "shared", queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]
    path = _only_file(tmp_path / "shared")
    battles = _battles(n=200)
    key = ext.content_hash(battles, ("length", "formatting"))
    assert FeatureCache(path, key, ext.row_ids(battles)).read() is not None


def test_cache_key_follows_the_feature_code(tmp_path, monkeypatch):
    """Editing any group's code changes the key, so a stale cache is never read back (no version bump needed)."""
    import shutil

    copy = tmp_path / "features"
    shutil.copytree(ext.FEATURE_SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ext, "FEATURE_SOURCES", copy)
    battles = _battles(n=20)
    before = ext.content_hash(battles, ("length",))
    assert ext.content_hash(battles, ("length",)) == before  # the same code: the same key
    assert ext.definition_hash(copy) == ext.definition_hash(ext.FEATURE_SOURCES)
    groups = copy / "groups.py"
    groups.write_text(groups.read_text().replace("MATTR_WINDOW = 50", "MATTR_WINDOW = 40"))
    assert ext.content_hash(battles, ("length",)) != before
