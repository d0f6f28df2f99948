"""The tie-handling options by name, filled by ``@register`` on each option's class.

Why a module of its own: ``StackerConfig`` validates ``tie_handling`` and the command-line flag
offers its choices from here, while the options' classes (``stacking.tie_handling``) build
boosters and so import the config; this leaf breaks that loop. Importing the ``stacking`` package
registers the built-in options, so the registry is full before any config is checked.
"""

from __future__ import annotations

from typing import Any, TypeVar

AUTO = "auto"  # resolved per fit (stacking.tie_handling.resolve_tie_handling)
REGISTRY: dict[str, Any] = {}  # name -> the option's class (a stacking.tie_handling.TieHandling)

T = TypeVar("T")


def register(cls: T) -> T:
    """Class decorator: make the option ``cls.name`` usable by name (configs, CLI, bundles)."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name or name == AUTO:
        raise ValueError(f"a tie handling needs a name other than {AUTO!r}, got {name!r}")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"tie handling {name!r} is registered twice")
    REGISTRY[name] = cls
    return cls


def option_names() -> tuple[str, ...]:
    """The registered options, in registration order."""
    return tuple(REGISTRY)


def choices() -> tuple[str, ...]:
    """What ``StackerConfig.tie_handling`` and ``--tie-handling`` accept: ``auto`` or an option."""
    return (AUTO, *REGISTRY)


def check_choice(name: str) -> str:
    if name not in choices():
        raise ValueError(f"tie_handling must be one of {choices()}, got {name!r}")
    return name
