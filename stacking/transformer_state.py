"""Per-fold feature transformers saved without pickle: JSON metadata + an ``.npz`` of plain arrays.

A transformer takes part by implementing ``get_state() -> (meta: dict, arrays: dict[str, ndarray])`` and
the classmethod ``from_state(meta, arrays)``. Its class is stored as a dotted path, and only the classes in
:data:`ALLOWED_TRANSFORMERS` (path -> class, added by :func:`allow_transformer` from code, never from a file) are
ever built on load: a bundle cannot make us import arbitrary code. The pipelines' fold-feature kinds
(``pipelines.stages.fold_feature_kinds``) allow their classes when they register.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ALLOWED_TRANSFORMERS: dict[str, type[Any]] = {}  # dotted class path -> class

T = TypeVar("T", bound=type)


def allow_transformer(cls: T) -> T:
    """Let bundles rebuild ``cls`` (it must have ``get_state`` and the classmethod ``from_state``)."""
    if not (callable(getattr(cls, "get_state", None)) and callable(getattr(cls, "from_state", None))):
        raise TypeError(f"{cls.__qualname__} needs get_state() and from_state() to be saved in a model bundle")
    path = f"{cls.__module__}.{cls.__qualname__}"
    if ALLOWED_TRANSFORMERS.get(path, cls) is not cls:
        raise ValueError(f"transformer class path {path!r} is allowed for another class")
    ALLOWED_TRANSFORMERS[path] = cls
    return cls


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_allowed(path: str, where: str) -> None:
    if path not in ALLOWED_TRANSFORMERS:
        raise ValueError(f"{where}: transformer class {path!r} is not in the allow-list {sorted(ALLOWED_TRANSFORMERS)}")


def save_transformer(transformer: Any, stem: Path) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.npz``; the two files written."""
    path = class_path(transformer)
    _check_allowed(path, str(stem))
    if not hasattr(transformer, "get_state"):
        raise TypeError(f"{path} has no get_state(): it cannot be saved in a model bundle")
    meta, arrays = transformer.get_state()
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    objects = [k for k, v in arrays.items() if v.dtype == object]
    if objects:
        raise TypeError(f"{path}.get_state(): arrays {objects} hold Python objects (they would need pickle)")
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    json_path.write_text(json.dumps({"class": path, "meta": meta}, indent=2, sort_keys=True))
    np.savez(npz_path, **arrays)
    return [json_path, npz_path]


def transformer_spec(transformer: Any) -> dict[str, Any]:
    """An unfitted transformer as JSON: its allowed class path and its ``get_params(deep=False)``."""
    path = class_path(transformer)
    _check_allowed(path, "fold feature")
    params = transformer.get_params(deep=False) if hasattr(transformer, "get_params") else {}
    try:
        params = json.loads(json.dumps(params))
    except TypeError as exc:
        raise ValueError(f"fold feature {path}: parameters are not JSON ({exc}); it cannot be saved") from None
    return {"class": path, "params": params}


def new_transformer(spec: dict[str, Any] | str, where: str) -> Any:
    """An unfitted instance from :func:`transformer_spec`'s record (or a bare class path, as older
    bundles stored it: default parameters). The class must be allowed."""
    path, params = (spec, {}) if isinstance(spec, str) else (str(spec.get("class", "")), dict(spec.get("params", {})))
    _check_allowed(path, where)
    return ALLOWED_TRANSFORMERS[path](**params)


def load_transformer(stem: Path) -> Any:
    """The transformer saved at ``stem``; the class must be allowed, nothing is unpickled."""
    json_path = stem.with_suffix(".json")
    stored = json.loads(json_path.read_text())
    path = str(stored.get("class", ""))
    _check_allowed(path, str(json_path))
    cls = ALLOWED_TRANSFORMERS[path]
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return cls.from_state(stored.get("meta", {}), arrays)
