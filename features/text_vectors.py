"""Word and char n-gram TF-IDF of each answer, reduced by SVD to a few dozen (A - B) components.

A known strong, cheap signal in the LMSYS arena competition: what an answer *says* (topics,
phrasing, formatting characters) beyond handcrafted counts. Everything fitted (IDF, SVD axes)
comes from the fold's training answers only, never labels.

Memory stays linear in rows and bounded per chunk: n-grams are hashed (``max_features``
buckets per analyzer, no vocabulary dict growing with the corpus), texts are capped at
``max_chars``, IDF and SVD are fitted on at most ``svd_fit_texts`` answers, and transform
works in chunks that are reduced to dense columns at once. Word n-grams use sklearn's
hashing; char n-grams (over lowercased, whitespace-collapsed text) a numpy hasher.

Output (float32, index = battles.index): ``diff_tfidf_00..`` = svd(a) - svd(b), which flips
sign exactly on swap (the same linear map on both sides); ``pair_tfidf_word_cos`` and
``pair_tfidf_char_cos``: cosines of the A and B TF-IDF vectors (symmetric).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

CHUNK_ROWS = 2000
_WHITESPACE = re.compile(r"\s+")
_HASH_BASE = np.uint64(1000003)
_HASH_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the high bits of the product are well mixed


def char_ngram_counts(texts: list[str], ngram_range: tuple[int, int], n_features: int) -> sp.csr_matrix:
    """Hashed character n-gram counts of lowercased, whitespace-collapsed texts (padded by a space).

    Vectorised over a whole chunk in numpy (about 2x sklearn's per-n-gram Python loop on this
    machine); the hash is fixed, so counts are the same in every process and run.
    """
    padded = [" " + _WHITESPACE.sub(" ", t.lower()).strip() + " " for t in texts]
    lengths = np.array([len(p) for p in padded], dtype=np.int64)
    codes = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    row_of = np.repeat(np.arange(len(texts)), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(len(codes)) - np.repeat(starts, lengths)
    rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for n in range(ngram_range[0], ngram_range[1] + 1):
        m = len(codes) - n + 1
        if m <= 0:
            continue
        h = np.full(m, np.uint64(n), dtype=np.uint64)  # n in the seed: "abc" as a 3-gram differs from a 4-gram
        for k in range(n):
            h = h * _HASH_BASE + codes[k : k + m]  # wraps mod 2**64 on purpose
        h = (h * _HASH_MIX) >> np.uint64(32)
        inside = position[:m] + n <= lengths[row_of[:m]]  # n-grams never cross into the next text
        cols.append((h[inside] % np.uint64(n_features)).astype(np.int64))
        rows.append(row_of[:m][inside])
    r, c = np.concatenate(rows), np.concatenate(cols)
    x = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(texts), n_features))
    x.sum_duplicates()
    return x


def last_answers(battles: pd.DataFrame, side: str) -> list[str]:
    """The latest non-empty answer turn of each battle, for side ``"a"`` or ``"b"``."""
    out = []
    for turns in battles[f"{side}_turns"]:
        text = next((t for t in reversed(turns) if t and t.strip()), "")
        out.append(text)
    return out


class TfidfDiffTransformer(TransformerMixin, BaseEstimator):
    """Hashed word + char TF-IDF (sublinear tf, smooth idf, l2 per analyzer), SVD, A - B."""

    def __init__(
        self,
        n_components: int = 32,
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (3, 5),
        max_features: int = 2**18,
        max_chars: int = 4000,
        svd_fit_texts: int = 20000,
        seed: int = 0,
    ):
        self.n_components = n_components
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.max_features = max_features
        self.max_chars = max_chars
        self.svd_fit_texts = svd_fit_texts
        self.seed = seed

    def _counts(self, texts: list[str]) -> list[sp.csr_matrix]:
        """[word counts, char counts], hashed into ``max_features`` buckets each."""
        texts = [t[: self.max_chars] for t in texts]
        words = HashingVectorizer(
            analyzer="word",
            ngram_range=tuple(self.word_ngrams),
            token_pattern=r"(?u)\b\w+\b",
            n_features=self.max_features,
            alternate_sign=False,
            norm=None,
        ).transform(texts)
        char_range = (int(self.char_ngrams[0]), int(self.char_ngrams[1]))
        return [words.tocsr(), char_ngram_counts(texts, char_range, self.max_features)]

    def _tfidf(self, counts: list[sp.csr_matrix]) -> list[sp.csr_matrix]:
        out = []
        for x, idf in zip(counts, self.idf_):
            x = x.astype(np.float32)
            x.data = 1.0 + np.log(x.data)  # sublinear tf: a repeated phrase should not dominate
            out.append(normalize(x @ sp.diags(idf), norm="l2", copy=False).tocsr())
        return out

    def fit(self, battles: pd.DataFrame, y=None) -> TfidfDiffTransformer:
        """IDF and SVD axes from the training answers (A and B; a seeded sample of at most
        ``svd_fit_texts``, so fit time is bounded); labels are never read."""
        texts = last_answers(battles, "a") + last_answers(battles, "b")
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(len(texts), size=min(len(texts), self.svd_fit_texts), replace=False))
        chunks: list[list[sp.csr_matrix]] = [[], []]
        for start in range(0, len(sample), CHUNK_ROWS):
            for i, x in enumerate(self._counts([texts[j] for j in sample[start : start + CHUNK_ROWS]])):
                chunks[i].append(x)
        counts = [sp.vstack(c).tocsr() for c in chunks]
        n = len(sample)
        # smooth idf as sklearn's TfidfTransformer; a csr row holds each term once, so bincount = df
        self.idf_ = [
            (np.log((1 + n) / (1 + np.bincount(x.indices, minlength=self.max_features))) + 1.0).astype(np.float32)
            for x in counts
        ]
        # a bucket seen in one answer only cannot tie answers together: dropping those keeps the
        # SVD's dense (columns x components) work in proportion to the shared n-grams
        df = np.concatenate([np.bincount(x.indices, minlength=self.max_features) for x in counts])
        self.columns_ = np.flatnonzero(df >= 2)
        matrix = sp.hstack(self._tfidf(counts)).tocsc()[:, self.columns_].tocsr()
        k = max(1, min(self.n_components, matrix.shape[0] - 1, matrix.shape[1] - 1))
        self.svd_ = TruncatedSVD(n_components=k, algorithm="randomized", random_state=self.seed).fit(matrix)
        return self

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able settings and the fitted arrays (IDF, kept buckets, SVD axes): a model bundle
        stores them as JSON + npz, never as a pickle that ties it to one library version."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        meta = {"class": type(self).__name__, "params": params}
        arrays = {
            "idf_word": self.idf_[0],
            "idf_char": self.idf_[1],
            "columns": self.columns_,
            "svd_components": self.svd_.components_,
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TfidfDiffTransformer:
        """The fitted transformer back from :meth:`get_state`; ``transform`` output is identical."""
        params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        model = cls(**params)
        model.idf_ = [np.asarray(arrays["idf_word"]), np.asarray(arrays["idf_char"])]
        model.columns_ = np.asarray(arrays["columns"])
        components = np.asarray(arrays["svd_components"])
        svd = TruncatedSVD(n_components=len(components))
        svd.components_ = components
        svd.n_features_in_ = components.shape[1]
        model.svd_ = svd
        return model

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [f"diff_tfidf_{i:02d}" for i in range(self.svd_.n_components)]
        return np.array(names + ["pair_tfidf_word_cos", "pair_tfidf_char_cos"], dtype=object)

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        columns = list(self.get_feature_names_out())
        a_texts, b_texts = last_answers(battles, "a"), last_answers(battles, "b")
        blocks = []
        for start in range(0, len(battles), CHUNK_ROWS):
            a = self._tfidf(self._counts(a_texts[start : start + CHUNK_ROWS]))
            b = self._tfidf(self._counts(b_texts[start : start + CHUNK_ROWS]))
            svd_a = self.svd_.transform(sp.hstack(a).tocsc()[:, self.columns_].tocsr())
            svd_b = self.svd_.transform(sp.hstack(b).tocsc()[:, self.columns_].tocsr())
            cosines = [np.asarray(xa.multiply(xb).sum(axis=1)).ravel() for xa, xb in zip(a, b)]
            blocks.append(np.column_stack([svd_a - svd_b, *cosines]))
        values = np.vstack(blocks) if blocks else np.zeros((0, len(columns)))
        return pd.DataFrame(values.astype(np.float32), columns=columns, index=battles.index)
