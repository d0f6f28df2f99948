"""benchmarks/transformer_gain.py's bookkeeping: the fine-tuning job's OOF is aligned by id and its
folds must keep prompt groups whole; an earlier run's rows survive a run that did not redo them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from pipelines.data.battles import load_battles
from tests.conftest import make_battles

transformer_gain = pytest.importorskip("benchmarks.transformer_gain")


@pytest.fixture
def battles(tmp_path):
    raw = make_battles(30, seed=3)
    raw["id"] = [f"setx:{i}" for i in range(len(raw))]
    raw.to_csv(tmp_path / "train.csv", index=False)
    return load_battles(tmp_path / "train.csv")[0].assign(source="setx")


def _job(tmp_path, battles, folds, ids=None):
    run = tmp_path / "job"
    run.mkdir(exist_ok=True)
    ids = list(battles["id"]) if ids is None else ids
    proba = np.random.default_rng(0).dirichlet(np.ones(3), size=len(ids))
    oof = pd.DataFrame(proba, columns=list(CLASS_COLUMNS)).assign(id=ids)
    oof[::-1].to_parquet(run / "oof_minilm.parquet")  # stored in another order than the battles
    pd.DataFrame({"id": ids, "fold": folds}).to_csv(run / "folds.csv", index=False)
    return run, oof


def test_minilm_oof_is_aligned_by_id_and_accepts_the_older_id_spelling(tmp_path, battles):
    from pipelines.data.source_folds import make_source_folds

    folds = make_source_folds(battles, 3, 0)
    assert transformer_gain.minilm_oof(battles, None) is None
    for ids in (None, [i.replace(":", "-") for i in battles["id"]]):
        run, oof = _job(tmp_path, battles, folds, ids)
        probs, fold_of = transformer_gain.minilm_oof(battles, run)
        np.testing.assert_allclose(probs.to_numpy(), oof[list(CLASS_COLUMNS)].to_numpy())
        assert list(probs.columns) == [f"minilm_{c}" for c in CLASS_COLUMNS]
        np.testing.assert_array_equal(fold_of, folds)


def test_minilm_folds_that_split_a_prompt_group_are_refused(tmp_path, battles):
    from pipelines.data.source_folds import source_groups

    groups = source_groups(battles)
    shared = np.flatnonzero(groups == pd.Series(groups).value_counts().index[0])
    assert len(shared) > 1  # make_battles repeats prompts
    folds = np.zeros(len(battles), dtype=int)
    folds[shared[0]] = 1
    run, _ = _job(tmp_path, battles, folds)
    with pytest.raises(ValueError, match="prompt groups span several folds"):
        transformer_gain.minilm_oof(battles, run)


def test_rows_of_an_earlier_run_are_kept_and_marked(tmp_path):
    earlier = {
        "meta": {"command": "python benchmarks/transformer_gain.py --variants emb", "datasets": {"ties": "(b)"}},
        "results": {"ties": {"+ embeddings": {"oof": [0.86]}, "+ tfidf": {"status": "not run"}}},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(earlier))
    now = {"ties": {"features only": {"oof": [0.87]}, "+ tfidf": {"oof": [0.865]}}}
    results, meta = transformer_gain.merge_earlier(path, now, {"command": "now", "datasets": {}})
    assert list(results["ties"]) == ["features only", "+ tfidf", "+ embeddings"]  # the script's variant order
    assert results["ties"]["+ embeddings"] == {"oof": [0.86], "command": earlier["meta"]["command"]}
    assert results["ties"]["+ tfidf"] == {"oof": [0.865]}  # measured now: the earlier status row does not win
    assert meta["datasets"] == {"ties": "(b)"}
