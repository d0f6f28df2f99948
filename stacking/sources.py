"""Extra probability sources (e.g. an encoder's OOF file) as stacker feature columns.

A source file holds ``id`` and the three class probabilities (``winner_model_a``,
``winner_model_b``, ``winner_tie``), as CSV or parquet (read and checked by
``pipelines.data.tables.read_proba_file``). Its columns follow the A/B convention
(``a_enc_<name>`` / ``b_enc_<name>`` exchange on swap, ``diff_enc_<name>`` flips, the tie
probability is symmetric), so a swap-consistent source keeps the stacker exactly symmetric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arena_schema import A_WINS, B_WINS, CLASS_COLUMNS, TIE


def source_features(proba: pd.DataFrame, ids: pd.Series, name: str, path: str = "") -> pd.DataFrame:
    """Align a probability frame to ``ids`` and name its columns for the stacker."""
    indexed = proba.set_index("id").reindex(pd.Index(ids.astype(str)))
    missing = indexed[CLASS_COLUMNS[0]].isna()
    if missing.any():
        raise ValueError(
            f"source {name!r} {path}: no probabilities for {int(missing.sum())} id(s), "
            f"e.g. {list(indexed.index[missing][:5])}"
        )
    p = np.clip(indexed.to_numpy(dtype=np.float64), 1e-7, 1.0)
    return pd.DataFrame(
        {
            f"a_enc_{name}": p[:, A_WINS],
            f"b_enc_{name}": p[:, B_WINS],
            f"pair_enc_{name}_tie": p[:, TIE],
            f"diff_enc_{name}": np.log(p[:, A_WINS]) - np.log(p[:, B_WINS]),
        },
        index=ids.index,
    ).astype(np.float32)


def source_name_of(column: str) -> str | None:
    """The source a stacker column came from, or None for handcrafted columns."""
    for prefix in ("a_enc_", "b_enc_", "diff_enc_"):
        if column.startswith(prefix):
            return column[len(prefix) :]
    if column.startswith("pair_enc_") and column.endswith("_tie"):
        return column[len("pair_enc_") : -len("_tie")]
    return None
