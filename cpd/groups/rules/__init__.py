"""Op rules, one file per family; importing this package fills the registry."""

from cpd.groups.rules import (  # noqa: F401
    attention,
    elementwise,
    factory,
    linalg,
    norm,
    shape,
    spatial,
    strided,
    windows,
)
from cpd.groups.rules.registry import RULES, Args, Ctx, register

__all__ = ["RULES", "Args", "Ctx", "register"]
