"""The import layers the README promises, checked on the source (every import, also inside functions).

arena_schema <- features, stacking, encoders <- pipelines; no module imports a command module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYER = {"arena_schema": 0, "features": 1, "stacking": 1, "encoders": 1, "pipelines": 2}


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


def test_the_layers_are_found():
    assert {"arena_schema", "pipelines.full_run", "stacking.cross_fit", "encoders.classifier"} <= set(MODULES)
    assert {"pipelines.full_run", "pipelines.predict", "pipelines.tune", "pipelines.data_report"} <= COMMANDS


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
    assert not wrong, f"{module} imports {wrong}"
