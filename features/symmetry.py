"""The A/B naming convention every feature column follows, and the swap it implies.

- ``a_<name>`` / ``b_<name>``: a property of response A / B; swapping A and B exchanges them.
- ``diff_<name>`` / ``logratio_<name>``: A minus B; swapping flips the sign.
- anything else (``pair_*``, ``prompt_*``): a property of the pair or the prompt; unchanged.

Keeping this rule in one place is what lets the stacker augment with swapped rows and
average over both orders while staying exactly symmetric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ANTISYMMETRIC_PREFIXES = ("diff_", "logratio_")


def swap_column_name(name: str) -> str:
    """The column a value moves to when A and B are swapped."""
    if name.startswith("a_"):
        return "b_" + name[2:]
    if name.startswith("b_"):
        return "a_" + name[2:]
    return name


def check_swappable(columns: list[str]) -> None:
    """Every a_/b_ column needs its partner, or a swap would invent or lose data."""
    present = set(columns)
    orphans = [c for c in columns if c[:2] in ("a_", "b_") and swap_column_name(c) not in present]
    if orphans:
        raise ValueError(f"feature columns without an A/B partner: {orphans[:10]}")


def swap_feature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of the same battles with A and B exchanged, columns in the same order."""
    columns = list(frame.columns)
    check_swappable(columns)
    out = {}
    for col in columns:
        source = frame[swap_column_name(col)]
        out[col] = -source if col.startswith(ANTISYMMETRIC_PREFIXES) else source
    return pd.DataFrame(out, index=frame.index)[columns]


def swap_feature_matrix(matrix: np.ndarray, columns: list[str]) -> np.ndarray:
    """The numpy twin of :func:`swap_feature_frame` (column permutation and sign flips)."""
    check_swappable(columns)
    index = {c: i for i, c in enumerate(columns)}
    perm = np.array([index[swap_column_name(c)] for c in columns])
    sign = np.array([-1.0 if c.startswith(ANTISYMMETRIC_PREFIXES) else 1.0 for c in columns])
    return matrix[:, perm] * sign
