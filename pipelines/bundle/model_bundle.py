"""A fitted ``ArenaPreferenceModel`` as a bundle on disk, and back: what is written, what is checked on load.

Why here, not in the estimator: the bundle's layout (stackers, encoders' fold models, OOF probabilities, shift
reference, the manifest's parameters, fit record and decisions) and its identity checks (feature code, LoRA
bases, the pickled twin of both) are the bundle's format, read by ``predict``, the notebook and ``load`` alike.
The functions take the model as it is (duck-typed: its parameters and fitted attributes), so this layer never
imports the estimator; :func:`load_model` builds one through the class it is given.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from encoders.settings import EncoderConfig
from features.groups import DEFAULT_GROUPS, expand_groups
from pipelines.bundle.decisions import FEATURES, FULL, check_decisions, decisions_record
from pipelines.bundle.fit_record import FitRecord
from pipelines.bundle.identity import base_difference, base_identity, feature_difference, feature_fingerprint
from pipelines.bundle.store import (
    BUNDLE_FORMAT,
    BundleError,
    load_stacker,
    read_verified,
    replace_directory,
    write_manifest,
)
from pipelines.config.run_config import FeatureConfig, SourceFiles
from pipelines.runtime.run_dir import remove_quietly, temp_path
from pipelines.stages.fold_feature_kinds import setting_names
from stacking.calibration_choice import validate_test_calibration
from stacking.config import StackerConfig
from stacking.model import library_versions
from stacking.shift_detection import ShiftReference
from stacking.transformer_state import new_transformer, transformer_spec

PICKLED_IDENTITY = "_pickled_identity"  # what a pickled fitted model carries and checks when unpickled
SHIFT_REFERENCE = "shift_reference.npz"  # the training rows new rows are compared with (test_calibration="auto")
LOCAL_PARAMS = ("cache_dir", "work_dir", "progress")  # this machine's settings: never saved in a bundle
REQUIRED_PARAMS = ("n_folds", "seed", "feature_groups", "stacker", "encoders", "extra_sources")  # in every bundle
RENAMED_PARAMS = {"calibration": "test_calibration"}  # older bundles' parameter names -> today's


def feature_groups_of(model: Any) -> tuple[str, ...]:
    """The handcrafted feature groups ``model.feature_groups`` names (``default`` expanded; None: the defaults)."""
    return DEFAULT_GROUPS if model.feature_groups is None else expand_groups(model.feature_groups)


# --------------------------------------------------------------------------- write


def save_bundle(model: Any, directory: str | Path, *, decisions: dict | None, test_choice: dict | None) -> Path:
    """Write ``model``'s bundle to ``directory``: staged next to it, then moved into place (a killed save leaves
    a temporary the next run sweeps); ``model.decisions_`` is then what the bundle recorded."""
    target = Path(directory)
    staged = temp_path(target)
    staged.mkdir(parents=True)
    try:
        record = write_bundle(model, staged, decisions, test_choice)
        replace_directory(staged, target)
    except BaseException:
        remove_quietly(staged)
        raise
    model.decisions_ = record
    return target


def write_bundle(model: Any, staged: Path, decisions: dict | None, test_choice: dict | None) -> dict:
    """Every file of ``model``'s bundle into the empty folder ``staged``, the manifest last; the decisions it
    recorded (``decisions``: what the run submitted, else the model's own, else its chosen stacker)."""
    decisions = decisions_record(getattr(model, "decisions_", None) if decisions is None else decisions, model)
    for key, stacker in model.stackers_.items():
        stacker.save(staged / f"stacker_{key}")
    encoders = _write_encoders(model, staged) if FULL in model.stackers_ else {}
    np.savez(staged / "oof_proba.npz", oof_proba=np.asarray(model.oof_proba_, dtype=np.float64))
    reference = getattr(model, "shift_reference_", None)
    if reference is not None:
        reference.save(staged / SHIFT_REFERENCE)
    groups = feature_groups_of(model)
    write_manifest(
        staged,
        {
            "classes": list(model.classes_),
            "feature_groups": list(groups),
            "sources": list(model.extra_sources or {}),
            "stackers": sorted(model.stackers_),
            "chosen_stacker": model.chosen_stacker_,
            "stacker_oof_log_loss": dict(getattr(model, "stacker_oof_log_loss_", {})),
            "feature_columns": model.feature_columns_,
            "encoder_names": model.encoder_names_,
            "oof_log_loss": model.oof_log_loss_,
            "encoders": encoders,
            "params": params_json(model),
            "fit_report": model.fit_report_.kept(test_choice),
            "decisions": decisions,
            "feature_identity": feature_fingerprint(groups),
        },
    )
    return decisions


def _write_encoders(model: Any, staged: Path) -> dict[str, dict]:
    """The with-encoders stacker's encoders' fold models (chosen or not), and their manifest entries."""
    out = {}
    for name, fold_models in model.encoder_models_.items():
        copy = fold_models.copy_to(staged / "encoders" / name)
        out[name] = {
            "directory": f"encoders/{name}",
            "base_model": copy.manifest["base_model"],
            "lora": copy.manifest["lora"],
            "folds": copy.folds,
            "inputs": copy.manifest["inputs"],
            "base_identity": base_identity(copy.manifest["base_model"]) if copy.manifest["lora"] else None,
        }
    return out


def params_json(model: Any) -> dict:
    """``get_params(deep=False)`` as JSON, less this machine's settings (:data:`LOCAL_PARAMS`): the one parameter
    list, so a new parameter is saved and loaded without a second list to keep in step."""
    params = {k: v for k, v in model.get_params(deep=False).items() if k not in LOCAL_PARAMS}
    return {k: _encode_param(k, v, model) for k, v in params.items()}


def _encode_param(name: str, value: Any, model: Any) -> Any:
    """One ``get_params()`` value as the manifest stores it."""
    if name == "feature_groups":
        return list(feature_groups_of(model))
    if name == "stacker":
        return asdict(value or StackerConfig())
    if name == "encoders":
        return [asdict(e) for e in value]
    if name == "fold_features":  # unfitted: class and parameters (the fitted ones live in the stackers)
        return [transformer_spec(t) for t in value]
    if name == "extra_sources":
        return {source: str(files) for source, files in (value or {}).items()}
    return value


def _decode_param(name: str, stored: Any) -> Any:
    """The inverse of :func:`_encode_param`; a malformed value raises ``KeyError``/``TypeError``/``ValueError``."""
    if name in ("n_folds", "seed"):
        return int(stored)
    if name in setting_names():  # a fold-feature kind's setting: the type of its FeatureConfig default
        default: Any = FeatureConfig.__dataclass_fields__[name].default
        return stored if stored is None or default is None else type(default)(stored)
    if name == "feature_groups":
        return tuple(stored)
    if name == "stacker":
        return StackerConfig.from_dict(stored)
    if name == "encoders":
        known = {f.name for f in fields(EncoderConfig)}
        return tuple(EncoderConfig(**{k: v for k, v in e.items() if k in known}) for e in stored)
    if name == "fold_features":
        return tuple(new_transformer(spec, "fold_features") for spec in stored)
    if name == "extra_sources":
        return {str(source): SourceFiles.parse(files) for source, files in stored.items()}
    if name == "test_calibration":
        return validate_test_calibration(stored)
    return stored


# --------------------------------------------------------------------------- read


def load_model(
    cls: type, directory: str | Path, *, encoder_base_paths: dict[str, str] | None = None, require_signature: bool
) -> Any:
    """A fitted ``cls`` from the bundle in ``directory``, every file verified first (:class:`BundleError`)."""
    directory = Path(directory)
    manifest = read_verified(directory, require_signature=require_signature)
    where = directory / "manifest.json"
    try:
        params = {RENAMED_PARAMS.get(k, k): v for k, v in manifest["params"].items()}
        missing = [k for k in REQUIRED_PARAMS if k not in params]
        if missing:
            raise KeyError(missing[0])
        known = [k for k in cls().get_params(deep=False) if k in params and k not in LOCAL_PARAMS]
        model = cls(**{k: _decode_param(k, params[k]) for k in known})
        chosen, stacker_keys = manifest["chosen_stacker"], list(manifest["stackers"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: malformed ({type(exc).__name__}: {exc})") from None
    if FEATURES not in stacker_keys or chosen not in stacker_keys:
        raise BundleError(f"{where}: stackers {stacker_keys}, chosen {chosen!r}")
    groups = feature_groups_of(model)
    _check_feature_identity(directory, manifest, groups)
    model.stackers_ = {key: load_stacker(directory / f"stacker_{key}") for key in stacker_keys}
    _check_stackers(directory, manifest, model, groups)
    model.encoder_models_ = _load_encoders(directory, manifest, encoder_base_paths or {})
    extra = dict(model.extra_sources or {})
    needed = [s for s in model.stackers_[chosen].feature_config.get("sources", []) if s not in extra]
    if chosen == FULL and sorted(needed) != sorted(manifest["encoder_names"]):
        raise BundleError(f"{where}: encoder_names do not match the stacker's sources")
    _set_fitted(model, directory, manifest)
    try:
        model.decisions_ = check_decisions(manifest.get("decisions"), stacker_keys)
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    return model


def _check_stackers(directory: Path, manifest: dict, model: Any, groups: tuple[str, ...]) -> None:
    for key, stacker in model.stackers_.items():
        if list(stacker.feature_config.get("groups", [])) != list(groups):
            raise BundleError(f"{directory / f'stacker_{key}'}: feature groups differ from the manifest's")
    chosen = manifest["chosen_stacker"]
    if model.stackers_[chosen].columns != manifest["feature_columns"]:
        raise BundleError(f"{directory / f'stacker_{chosen}'}: columns differ from the manifest's feature_columns")


def _set_fitted(model: Any, directory: Path, manifest: dict) -> None:
    """The fitted attributes the manifest and the OOF file hold."""
    with np.load(directory / "oof_proba.npz", allow_pickle=False) as npz:
        model.oof_proba_ = npz["oof_proba"]
    model.classes_ = np.array(manifest["classes"])
    model.chosen_stacker_ = manifest["chosen_stacker"]
    model.feature_columns_ = list(manifest["feature_columns"])
    model.encoder_names_ = list(manifest["encoder_names"])
    model.oof_log_loss_ = float(manifest["oof_log_loss"])
    model.stacker_oof_log_loss_ = {k: float(v) for k, v in manifest.get("stacker_oof_log_loss", {}).items()}
    model.folds_ = None
    model.fit_report_ = FitRecord.from_bundle(manifest.get("fit_report") or {})
    model.test_choice_ = model.fit_report_.test_choice
    model.shift_reference_ = load_shift_reference(directory, model.feature_columns_)


def load_shift_reference(directory: Path, feature_columns: list[str]) -> ShiftReference | None:
    path = directory / SHIFT_REFERENCE
    if not path.exists():
        return None
    try:
        return ShiftReference.load(path, feature_columns)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: {exc}") from None


def _load_encoders(directory: Path, manifest: dict, base_paths: dict[str, str]) -> dict:
    unknown = sorted(set(base_paths) - set(manifest.get("encoders") or {}))
    if unknown:
        raise BundleError(
            f"encoder base path for {unknown[0]!r}: the bundle has no such encoder"
            f" (its encoders: {sorted(manifest.get('encoders') or {})})"
        )
    if not manifest.get("encoders"):
        return {}
    from encoders.fold_models import EncoderFoldModels

    out = {}
    for name, info in manifest["encoders"].items():
        where = directory / info["directory"]
        try:
            out[name] = EncoderFoldModels.load(where, base_path=base_paths.get(name))
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"{where}: {type(exc).__name__}: {exc}") from None
        if out[name].folds != list(info["folds"]):
            raise BundleError(f"{where}: fold models {out[name].folds} differ from the manifest's {info['folds']}")
        _check_base_identity(name, info, Path(out[name].config.model_path or ""))
    return out


# --------------------------------------------------------------------------- identity


def _check_feature_identity(directory: Path, manifest: dict, groups: tuple[str, ...]) -> None:
    """The feature code running now computes what the bundle's boosters were fitted on."""
    saved = manifest.get("feature_identity")
    if not isinstance(saved, dict):
        raise BundleError(f"{directory / 'manifest.json'}: no feature_identity")
    difference = feature_difference(saved, groups)
    if difference:
        raise BundleError(f"{directory}: {difference}; the bundle's stackers were fitted on other features: retrain")


def _check_base_identity(name: str, info: dict, base: Path) -> None:
    """A LoRA encoder's base is the one it was trained on; checked where the base is now (a missing base
    is reported when the encoder is used, so a features-only prediction still works without it)."""
    saved = info.get("base_identity")
    if not info.get("lora") or not base.is_dir():
        return
    if not isinstance(saved, dict):
        raise BundleError(f"encoder {name!r}: the manifest records no base identity")
    difference = base_difference(saved, base)
    if difference:
        raise BundleError(f"encoder {name!r}: base model {base}: {difference}; give the right one (--encoder-base)")


def require_base(name: str, fold_models: Any) -> None:
    """One line instead of a library traceback when a LoRA encoder's base is not where it is looked for."""
    base = Path(fold_models.config.model_path or "")
    if fold_models.manifest.get("lora") and not base.exists():  # a folder, or one .gguf file
        raise BundleError(
            f"encoder {name!r}: base model not found at {base}; give it with --encoder-base {name}=DIR"
            " (encoder_base_paths), or predict with the features-only stacker"
        )


def _versions() -> dict[str, Any]:
    return {"bundle format": BUNDLE_FORMAT, **library_versions()}


def pickle_identity(model: Any) -> dict:
    """What a fitted model's pickle carries: the format and library versions and the feature fingerprint."""
    return {"versions": _versions(), "features": feature_fingerprint(feature_groups_of(model))}


def check_pickle_identity(identity: Any, model: Any) -> None:
    """The code and libraries unpickling a fitted model are those it was pickled with (BundleError otherwise)."""
    where = "unpickled ArenaPreferenceModel"
    advice = "a pickle is for this checkout only: save() the model and load() its bundle, or retrain"
    if not isinstance(identity, dict) or not isinstance(identity.get("features"), dict):
        raise BundleError(f"{where}: it carries no feature identity (pickled by an older version); {advice}")
    saved, now = identity.get("versions") or {}, _versions()
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        name = changed[0]
        raise BundleError(f"{where}: {name} {saved.get(name)} when pickled, {now.get(name)} now; {advice}")
    difference = feature_difference(identity["features"], feature_groups_of(model))
    if difference:
        raise BundleError(f"{where}: {difference}; {advice}")
