"""The import layers the README promises, checked on the source (every import, also inside functions).

arena_schema <- features, encoders <- stacking <- pipelines; inside pipelines, one subpackage per role,
runtime <- formats <- data <- config <- reports <- stages <- bundle <- model <- export <- experiments <- the command
modules (and their flag helpers in ``pipelines/cli.py`` and checks in ``pipelines/preflight.py``) at the top. No module
imports a command module, and no project module imports itself back through others (no cycle). ``stages/`` holds the
fit's stages only (:data:`FIT_STAGES`), so it cannot grow back into a grab-bag.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYER = {"arena_schema": 0, "features": 1, "encoders": 1, "stacking": 2, "pipelines": 3}
# the roles inside pipelines, lowest first; a module directly in pipelines/ (a command, cli) sits above them all
ROLES = ("runtime", "formats", "data", "config", "reports", "stages", "bundle", "model", "export", "experiments")
COMMAND_HELPERS = {"pipelines.cli", "pipelines.preflight"}  # beside the commands: their flags and their checks
# each module of stages/ is one stage of the fit (or the fit stages' own registry); a run setting, a command check,
# a run decision or an experiment statistic belongs to config/, preflight.py, model/ or experiments/
FIT_STAGES = {
    "fold_feature_kinds": "the fold-feature kinds the cross-fit fits per fold",
    "fold_feature_setup": "the fold transformers a config asks for, and the columns they read",
    "stacker_inputs": "folds, features and sources: the stacker's inputs and fit arguments",
    "stacker_stage": "the stacker's cross-fit and calibration",
    "encoder_stage": "the encoders' fine-tuning in the same folds",
    "encoder_launch": "the encoders' data-parallel launch",
    "new_source_stage": "the new-source calibrator and the shift reference",
}
ROLE_MAX_LINES = 2000


def _modules() -> dict[str, Path]:
    out = {"arena_schema": ROOT / "arena_schema.py"}
    for package in ("features", "stacking", "encoders", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(p for p in parts if p != "__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # "from pipelines import tune"
    return names


MODULES = _modules()


def _is_command(path: Path) -> bool:
    """A command module: it runs itself (``if __name__ == "__main__":``) and defines ``main``."""
    tree = ast.parse(path.read_text())
    runs = any(
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and ast.unparse(node.test).startswith("__name__")
        for node in tree.body
    )
    return runs and any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


# modules that parse arguments and call the library; only people (and tests) run them. Derived, not kept by hand.
COMMANDS = {name for name, path in MODULES.items() if name.startswith("pipelines.") and _is_command(path)}


def _role(module: str) -> str | None:
    """``"data"`` for ``pipelines.data.folds``; None outside pipelines' role subpackages."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 1 and parts[1] in ROLES else None


def _role_lines() -> dict[str, int]:
    return {
        role: sum(len(p.read_text().splitlines()) for p in (ROOT / "pipelines" / role).rglob("*.py")) for role in ROLES
    }


def test_the_layers_are_found():
    assert {"arena_schema", "pipelines.full_run", "stacking.cross_fit", "encoders.classifier"} <= set(MODULES)
    assert {"pipelines.full_run", "pipelines.predict", "pipelines.tune", "pipelines.data_report"} <= COMMANDS
    assert {"pipelines.model.estimator", "pipelines.data.folds", "pipelines.runtime.errors"} <= set(MODULES)


def test_pipelines_holds_only_roles_commands_and_their_flag_helpers():
    """Library code lives in a role subpackage; directly in pipelines/ only the commands, cli.py and preflight.py."""
    loose = {
        name
        for name in MODULES
        if name.count(".") == 1
        and name.startswith("pipelines.")
        and name not in COMMANDS | COMMAND_HELPERS | {f"pipelines.{role}" for role in ROLES}
    }
    assert not loose, f"modules in pipelines/ outside a role subpackage: {sorted(loose)}"
    subpackages = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(ROLES), f"pipelines/ subpackages {sorted(subpackages)} != roles {ROLES}"


def test_stages_holds_only_the_fits_stages():
    """A module added to stages/ must be a stage of the fit, named in :data:`FIT_STAGES` with what it does."""
    on_disk = {p.stem for p in (ROOT / "pipelines" / "stages").glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(FIT_STAGES), f"stages/ modules {sorted(on_disk)} != the fit's stages {sorted(FIT_STAGES)}"
    assert not [p for p in (ROOT / "pipelines" / "stages").iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_no_role_is_larger_than_the_limit():
    lines = _role_lines()
    print("lines per role:", lines)  # pytest -s shows them
    assert max(lines.values()) <= ROLE_MAX_LINES, lines


def test_no_import_cycle_among_project_modules():
    """Every import counts, also one inside a function: a cycle hidden that way is still a cycle. (A module's
    own packages are not edges: Python runs them before it, and ``from pkg import sibling`` names the sibling.)"""
    graph = {
        name: {i for i in _imports(path) if i in MODULES and i != name and not name.startswith(i + ".")}
        for name, path in MODULES.items()
    }
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("module", sorted(set(MODULES) - COMMANDS))
def test_no_system_exit_below_the_commands(module):
    """Library code raises ValueError-family errors; only commands turn them into exit codes."""
    raises = [
        node.lineno
        for node in ast.walk(ast.parse(MODULES[module].read_text()))
        if isinstance(node, ast.Raise) and node.exc is not None and "SystemExit" in ast.unparse(node.exc)
    ]
    assert not raises, f"{module} raises SystemExit at line(s) {raises}"


def _user_error_classes() -> dict[str, list[str]]:
    """{module: the classes it defines with ``UserError`` among their bases}, found in the source."""
    out: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("UserError") for b in node.bases):
                out.setdefault(name, []).append(node.name)
    return out


def test_every_user_error_is_a_value_error_and_none_is_raised_bare():
    """The library raises ``ValueError``-family errors: each ``UserError`` kind is also a ``ValueError``, and no
    module raises the bare base (a caller would need a second ``except`` for it)."""
    import importlib

    found = _user_error_classes()
    assert "pipelines.runtime.errors" in found and len(found) >= 8, found
    not_value = [
        f"{module}.{cls}"
        for module, classes in found.items()
        for cls in classes
        if not issubclass(getattr(importlib.import_module(module), cls), ValueError)
    ]
    assert not not_value, f"UserErrors that are not ValueErrors: {not_value}"
    bare = [
        f"{name}:{node.lineno}"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Raise) and node.exc is not None and ast.unparse(node.exc).startswith("UserError(")
    ]
    assert not bare, f"bare UserError raised at {bare}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_it_or_a_command(module):
    top = module.split(".")[0]
    wrong = []
    for name in sorted(_imports(MODULES[module])):
        target = name.split(".")[0]
        if target in LAYER and LAYER[target] > LAYER[top]:
            wrong.append(f"{name} (layer above)")
        if LAYER[top] == 1 and target in LAYER and LAYER[target] == 1 and target != top:
            wrong.append(f"{name} (a sibling package)")
        if name in COMMANDS and name != module:
            wrong.append(f"{name} (a command)")
        role, target_role = _role(module), _role(name)
        if role is not None and target == "pipelines":
            if target_role is None and name in MODULES and name.count(".") == 1:
                wrong.append(f"{name} (the command level above the roles)")
            elif target_role is not None and ROLES.index(target_role) > ROLES.index(role):
                wrong.append(f"{name} (role {target_role} above {role})")
    assert not wrong, f"{module} imports {wrong}"


def test_every_package_ships_in_the_wheel():
    """A new role folder missing from pyproject's package list installs a wheel without it (the offline notebook)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in ("features", "encoders", "stacking", "pipelines")
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert on_disk - listed == set(), f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"
