"""Per-row training weights that shrink the biggest sources' say: each source's total weight ∝ rows^(1 - power).

Why: pooled over several human-preference sets, the largest ones (8.5k harmlessness pairs, 6.7k crowd
votes at 11% ties) set the stacker's tie level and its sense of what a decided battle looks like. A
battle from a source the model has never seen is no more like the big sets than like the small ones.
``power`` 0 keeps every row at weight 1 (pooled), 1 gives every source the same total weight, 0.5 is
in between (total weight ∝ √rows, as multilingual models sample languages). Weights have mean 1, so
LightGBM's ``min_child_weight``-style settings keep their meaning.
"""

from __future__ import annotations

import numpy as np


def source_balance_weights(source: np.ndarray, power: float) -> np.ndarray:
    """One weight per row: ``rows_of_its_source ** -power``, scaled to mean 1."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"source balance power must be in [0, 1], got {power}")
    source = np.asarray(source).astype(str)
    if len(source) == 0:
        return np.ones(0)
    _, inverse, counts = np.unique(source, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -power
    return weights / weights.mean()
