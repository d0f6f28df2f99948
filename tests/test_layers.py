"""The import layers the README promises, checked on the source (every import, also inside functions).

arena_schema <- features, encoders <- stacking <- pipelines; inside pipelines, one subpackage per role,
runtime <- formats <- data <- reports <- stages <- bundle <- model <- export <- experiments <- the command
modules (and their flag helpers in ``pipelines/cli.py``) at the top. No module imports a command module, and
no project module imports itself back through others (no cycle).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYER = {"arena_schema": 0, "features": 1, "encoders": 1, "stacking": 2, "pipelines": 3}
# the roles inside pipelines, lowest first; a module directly in pipelines/ (a command, cli) sits above them all
ROLES = ("runtime", "formats", "data", "reports", "stages", "bundle", "model", "export", "experiments")
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
    """Library code lives in a role subpackage; directly in pipelines/ only the commands and cli.py."""
    loose = {
        name
        for name in MODULES
        if name.count(".") == 1
        and name.startswith("pipelines.")
        and name not in COMMANDS | {"pipelines.cli"} | {f"pipelines.{role}" for role in ROLES}
    }
    assert not loose, f"modules in pipelines/ outside a role subpackage: {sorted(loose)}"
    subpackages = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(ROLES), f"pipelines/ subpackages {sorted(subpackages)} != roles {ROLES}"


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
