"""The stacker's best parameters as ``pipelines.tune`` writes them (``best_params.json``), read back for
``full_run --params``: its shape checked here, its values tried on a tiny LightGBM fit by the command's checks
(``pipelines.preflight.check_params``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.runtime.config_file import read_json_file
from pipelines.runtime.errors import UserError
from stacking.config import CALIBRATIONS, check_param_names


class ParamsFileError(UserError, ValueError):
    """A ``--params`` file that is missing, not JSON, or not in the shape ``pipelines.tune`` writes."""


def load_params_file(path: str | Path) -> dict:
    """Best parameters from ``pipelines.tune``: ``{"params": {...}, "calibration": "..."}``, its shape checked
    (the values themselves are tried on a tiny LightGBM fit by ``pipelines.preflight.check_params``)."""
    where = f"--params {path}"
    data = read_json_file(path, where, ParamsFileError)
    expected = "expected a JSON object with a 'params' object (best_params.json written by pipelines.tune)"
    if not isinstance(data, dict) or "params" not in data:
        raise ParamsFileError(f"{where}: {expected}; got {type(data).__name__}{_keys(data)}")
    if not isinstance(data["params"], dict):
        raise ParamsFileError(f"{where}: 'params' is a {type(data['params']).__name__}; {expected}")
    try:
        check_param_names(data["params"])
    except ValueError as exc:
        raise ParamsFileError(f"{where}: params: {exc}") from None
    calibration = data.get("calibration", CALIBRATIONS[0])
    if calibration not in CALIBRATIONS:
        raise ParamsFileError(f"{where}: calibration {calibration!r} is not one of {list(CALIBRATIONS)}")
    return data


def _keys(data: object) -> str:
    return f" with keys {sorted(data)[:8]}" if isinstance(data, dict) else ""
