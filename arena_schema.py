"""The battle schema every package shares: class columns and names, and the A/B swap rules.

This module imports nothing from the project, so ``features``, ``stacking``, ``encoders`` and
``pipelines`` all depend on it and never on each other backwards.

Classes are ``0 = A wins``, ``1 = B wins``, ``2 = tie``. Feature columns follow one naming rule:

- ``a_<name>`` / ``b_<name>``: a property of response A / B; swapping A and B exchanges them.
- ``diff_<name>`` / ``logratio_<name>``: A minus B; swapping flips the sign.
- anything else (``pair_*``, ``prompt_*``): a property of the pair or the prompt; unchanged.

Keeping the rule in one place is what lets the stacker augment with swapped rows and average
over both orders while staying exactly symmetric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
CLASS_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
CLASS_NAMES = ("a", "b", "tie")
CLASS_TITLES = ("A wins", "B wins", "tie")  # the classes in prose (reports, messages)
A_WINS, B_WINS, TIE = range(len(CLASS_NAMES))  # class indices: label values and probability columns
N_CLASSES = len(CLASS_COLUMNS)
CLASS_SWAP = np.array([B_WINS, A_WINS, TIE])
ANTISYMMETRIC_PREFIXES = ("diff_", "logratio_")


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """A-wins <-> B-wins; ties stay."""
    return CLASS_SWAP[np.asarray(labels)]


def swap_proba(proba: np.ndarray) -> np.ndarray:
    """Probabilities (or soft labels) for the swapped battle: exchange the A and B columns."""
    return np.asarray(proba)[:, CLASS_SWAP]


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
