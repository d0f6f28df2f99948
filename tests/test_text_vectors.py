"""TF-IDF (A - B) components: exact swap antisymmetry, clone, fold-only fitting."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from arena_schema import check_swappable, swap_feature_frame
from features.text_vectors import TfidfDiffTransformer
from pipelines.data.battles import swap_battles
from tests.conftest import make_battles


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    from pipelines.data.battles import load_battles

    path = tmp_path_factory.mktemp("tv") / "train.csv"
    make_battles(120, seed=3).to_csv(path, index=False)
    return load_battles(path)[0]


def _small(**kw) -> TfidfDiffTransformer:
    return TfidfDiffTransformer(n_components=8, max_features=2**12, **kw)


def test_columns_dtype_and_index(battles):
    out = _small().fit(battles).transform(battles)
    assert list(out.columns[:8]) == [f"diff_tfidf_{i:02d}" for i in range(8)]
    assert list(out.columns[8:]) == ["pair_tfidf_word_cos", "pair_tfidf_char_cos"]
    assert (out.dtypes == np.float32).all() and out.index.equals(battles.index)
    check_swappable(list(out.columns))
    assert np.isfinite(out.to_numpy()).all()
    assert out.iloc[:, :8].abs().sum().sum() > 0  # not all zero: the components carry signal


def test_swap_flips_exactly(battles):
    model = _small().fit(battles)
    out, swapped = model.transform(battles), model.transform(swap_battles(battles))
    pd.testing.assert_frame_equal(swapped, swap_feature_frame(out), check_exact=True)


def test_identical_answers_give_zero_diff_and_unit_cosine(battles):
    same = battles.copy()
    same["b_turns"] = same["a_turns"]
    out = _small().fit(battles).transform(same)
    assert (out.filter(like="diff_").to_numpy() == 0).all()
    nonempty = np.array([bool("".join(t).strip()) for t in same["a_turns"]])
    np.testing.assert_allclose(out.loc[nonempty, "pair_tfidf_word_cos"], 1.0, rtol=1e-5)


def test_clone_fit_on_fold_rows_only_and_labels_unused(battles):
    template = _small(seed=1)
    model = clone(template)
    assert model.get_params() == template.get_params() and not hasattr(model, "svd_")
    train, held_out = battles.iloc[:80], battles.iloc[80:]
    fitted = model.fit(train)
    relabelled = train.assign(label=np.random.default_rng(0).permutation(train["label"].to_numpy()))
    refit = clone(template).fit(relabelled.drop(columns="label"))  # the label column is never read
    out = fitted.transform(held_out)
    assert out.index.equals(held_out.index) and np.isfinite(out.to_numpy()).all()
    np.testing.assert_array_equal(out.to_numpy(), refit.transform(held_out).to_numpy())
    # the fit depends on its rows only: fitting on other rows gives other axes
    other = clone(template).fit(battles.iloc[40:])
    assert not np.allclose(out.to_numpy(), other.transform(held_out).to_numpy())


def test_chunked_transform_matches_one_chunk(battles, monkeypatch):
    import features.text_vectors as tv

    model = _small().fit(battles)
    whole = model.transform(battles)
    monkeypatch.setattr(tv, "CHUNK_ROWS", 7)
    np.testing.assert_allclose(model.transform(battles).to_numpy(), whole.to_numpy(), rtol=1e-5, atol=1e-6)


def test_char_ngram_counts_stay_inside_each_text():
    from features.text_vectors import char_ngram_counts

    x = char_ngram_counts(["", "ab", "abc", "ABC"], (3, 5), 64)
    # padded " ab " has two 3-grams and one 4-gram; " abc " 3 + 2 + 1; case is folded
    np.testing.assert_array_equal(np.asarray(x.sum(axis=1)).ravel(), [0, 3, 6, 6])
    np.testing.assert_array_equal(x[2].toarray(), x[3].toarray())
    alone = char_ngram_counts(["abc"], (3, 5), 64)
    np.testing.assert_array_equal(alone.toarray(), x[2].toarray())  # neighbours add nothing
