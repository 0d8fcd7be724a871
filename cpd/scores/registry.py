"""Criteria by exact name.

Names are matched exactly (no case folding, no aliases) so that a typo in a config
fails loudly instead of silently selecting another criterion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cpd.scores.base import Criterion

__all__ = ["DEFAULT_CRITERION", "register", "available", "get_criterion"]

DEFAULT_CRITERION = "hessian"

_REGISTRY: dict[str, type[Criterion]] = {}

C = TypeVar("C", bound=type[Criterion])


def register(name: str) -> Callable[[C], C]:
    """Class decorator: register a :class:`Criterion` subclass under ``name``."""

    def deco(cls: C) -> C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"criterion {name!r} is already registered to {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered criterion names, sorted."""
    return sorted(_REGISTRY)


def get_criterion(name: str = DEFAULT_CRITERION, **options: Any) -> Criterion:
    """Instantiate the criterion registered as ``name`` with keyword ``options``.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown importance criterion {name!r}; valid names: {', '.join(available())}")
    return cls(**options)
