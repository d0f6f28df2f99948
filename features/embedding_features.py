"""Stacker inputs from precomputed sentence embeddings, following the A/B convention.

Input: the battles frame with embedding columns (each cell a 1-D float array, L2-normalised),
as :func:`encoders.embedder.embed_battles` makes them and the pipeline joins on:
``emb_prompt``, ``emb_a``, ``emb_b`` and, optionally, ``emb_conv_a``, ``emb_conv_b``.
The embeddings are frozen (no labels), so computing them once for all rows leaks nothing;
only the projection of A - B is fitted, inside each fold.

Output (float32, index = battles.index):
``a_emb_cos_prompt``, ``b_emb_cos_prompt``, ``diff_emb_cos_prompt``, ``pair_emb_cos_ab``;
with conversations ``a_emb_conv_cos_prompt``, ``b_...``, ``diff_...``, ``pair_emb_conv_cos_ab``;
``diff_emb_proj_00..``: (a - b) projected on the leading principal axes of {a - b, b - a} over
the fold's training rows. That set is centred at 0 by construction, so the projection needs
no mean and is linear: swapping A and B flips its sign exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

EMBEDDING_COLUMNS = ("emb_prompt", "emb_a", "emb_b")
CONVERSATION_COLUMNS = ("emb_conv_a", "emb_conv_b")


def _matrix(battles: pd.DataFrame, column: str) -> np.ndarray:
    if column not in battles.columns:
        raise KeyError(f"battles need the embedding column {column!r} (see encoders.embedder.embed_battles)")
    if not len(battles):
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(list(battles[column])).astype(np.float32, copy=False)


def _rowwise_cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine per row; symmetric in x and y to the last bit (elementwise products commute)."""
    nx = np.sqrt(np.einsum("ij,ij->i", x, x))
    ny = np.sqrt(np.einsum("ij,ij->i", y, y))
    denom = nx * ny
    dot = np.einsum("ij,ij->i", x, y)
    return np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)


class EmbeddingPairFeatures(TransformerMixin, BaseEstimator):
    """Cosines and a fold-fitted projection of (a - b); see the module docstring for columns.

    ``conversation``: ``"auto"`` uses the conversation columns when the training battles have
    them (the transform then requires them too), ``True`` requires them, ``False`` ignores them.
    """

    def __init__(self, n_components: int = 16, conversation: bool | str = "auto", seed: int = 0):
        self.n_components = n_components
        self.conversation = conversation
        self.seed = seed

    def fit(self, battles: pd.DataFrame, y=None) -> EmbeddingPairFeatures:
        """Principal axes of the training rows' A - B differences (labels are never looked at)."""
        a, b = _matrix(battles, "emb_a"), _matrix(battles, "emb_b")
        diff = (a - b).astype(np.float64)
        # PCA of the symmetric set {d, -d}: its mean is 0, its covariance d'd / n (as 2 d'd / 2n).
        cov = diff.T @ diff / max(len(diff), 1)
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1][: self.n_components]
        components = eigvecs[:, order].T
        # a deterministic sign per axis (eigh's is arbitrary): largest-magnitude loading positive
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        self.components_ = (components * signs[:, None]).astype(np.float32)
        self.explained_variance_ = eigvals[order]
        self.conversation_ = (
            all(c in battles.columns for c in CONVERSATION_COLUMNS)
            if self.conversation == "auto"
            else bool(self.conversation)
        )
        self.n_features_in_ = a.shape[1]
        return self

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able settings and the fitted arrays, for a model bundle stored as JSON + npz (no pickle)."""
        meta = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "conversation_": bool(self.conversation_),
            "n_features_in_": int(self.n_features_in_),
        }
        return meta, {"components": self.components_, "explained_variance": np.asarray(self.explained_variance_)}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EmbeddingPairFeatures:
        """The fitted transformer back from :meth:`get_state`; ``transform`` output is identical."""
        model = cls(**meta["params"])
        model.components_ = np.asarray(arrays["components"])
        model.explained_variance_ = np.asarray(arrays["explained_variance"])
        model.conversation_ = bool(meta["conversation_"])
        model.n_features_in_ = int(meta["n_features_in_"])
        return model

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = ["a_emb_cos_prompt", "b_emb_cos_prompt", "diff_emb_cos_prompt", "pair_emb_cos_ab"]
        if self.conversation_:
            names += ["a_emb_conv_cos_prompt", "b_emb_conv_cos_prompt", "diff_emb_conv_cos_prompt"]
            names += ["pair_emb_conv_cos_ab"]
        names += [f"diff_emb_proj_{i:02d}" for i in range(len(self.components_))]
        return np.array(names, dtype=object)

    def transform(self, battles: pd.DataFrame) -> pd.DataFrame:
        columns = list(self.get_feature_names_out())
        if len(battles) == 0:
            return pd.DataFrame(np.zeros((0, len(columns)), dtype=np.float32), columns=columns, index=battles.index)
        p, a, b = (_matrix(battles, c) for c in EMBEDDING_COLUMNS)
        cos_a, cos_b = _rowwise_cos(a, p), _rowwise_cos(b, p)
        parts = [cos_a, cos_b, cos_a - cos_b, _rowwise_cos(a, b)]
        if self.conversation_:
            ca, cb = (_matrix(battles, c) for c in CONVERSATION_COLUMNS)
            conv_a, conv_b = _rowwise_cos(ca, p), _rowwise_cos(cb, p)
            parts += [conv_a, conv_b, conv_a - conv_b, _rowwise_cos(ca, cb)]
        values = np.column_stack(parts + [(a - b) @ self.components_.T])
        return pd.DataFrame(values.astype(np.float32), columns=columns, index=battles.index)
