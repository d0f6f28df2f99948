"""Swaps of labels and class probabilities when A and B change places (classes: 0=A, 1=B, 2=tie)."""

from __future__ import annotations

import numpy as np

CLASS_SWAP = np.array([1, 0, 2])


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """A-wins <-> B-wins; ties stay."""
    return CLASS_SWAP[np.asarray(labels)]


def swap_proba(proba: np.ndarray) -> np.ndarray:
    """Probabilities for the swapped battle: exchange the A and B columns."""
    return np.asarray(proba)[:, CLASS_SWAP]
