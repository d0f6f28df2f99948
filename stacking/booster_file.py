"""Read a LightGBM text model's header ourselves before LightGBM sees the file.

LightGBM aborts the whole process on some malformed files, so a truncated or edited booster must be
refused here: the header must name exactly the expected features and the file must hold every tree
its ``tree_sizes`` line announces, up to ``end of trees``.
"""

from __future__ import annotations

from pathlib import Path

HEADER_KEYS = ("max_feature_idx", "feature_names", "tree_sizes")


def read_header(path: Path) -> dict[str, str]:
    header: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("Tree="):
                break
            key, sep, value = line.partition("=")
            if sep:
                header[key] = value
    return header


def check_booster_file(path: str | Path, columns: list[str]) -> None:
    """Raise ValueError (naming ``path``) unless the file is a whole LightGBM model over ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: booster file missing")
    header = read_header(path)
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise ValueError(f"{path}: not a whole LightGBM text model (header lacks {missing})")
    names = header["feature_names"].split(" ")
    try:
        max_idx = int(header["max_feature_idx"])
        sizes = [int(s) for s in header["tree_sizes"].split()]
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable LightGBM header ({exc})") from None
    if max_idx + 1 != len(names):
        raise ValueError(f"{path}: max_feature_idx {max_idx} does not match {len(names)} feature names")
    if names != list(columns):
        differ = next((i for i, (a, b) in enumerate(zip(names, columns)) if a != b), min(len(names), len(columns)))
        raise ValueError(
            f"{path}: booster features ({len(names)}) differ from the model's columns ({len(columns)})"
            f" at position {differ}"
        )
    data = path.read_bytes()
    start = data.find(b"\nTree=")
    end = data.find(b"end of trees")
    if start < 0 or end < 0 or end - (start + 1) != sum(sizes):
        raise ValueError(f"{path}: truncated or edited LightGBM model (its {len(sizes)} trees do not match tree_sizes)")
