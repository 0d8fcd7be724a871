"""What the hook engine does for one model: the result of probing it.

:func:`cpd.scores.hook_probe.probe_model` builds a :class:`HookPlan` once per model;
:mod:`cpd.scores.activation_grads` follows it on every batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from cpd.scores.module_rules import ModuleRule

__all__ = ["ModuleCapture", "FreeParam", "HookPlan"]


@dataclass
class ModuleCapture:
    """A module the engine hooks: its rule, members and what to capture per call."""

    module: nn.Module
    rule: ModuleRule
    members: list[tuple[str, int, str]]  # (attribute, dim, canonical parameter name)
    needs: set[str] = field(default_factory=set)
    clone_x: bool = False
    clone_y: bool = False


@dataclass
class FreeParam:
    """A free parameter the engine tracks through its function calls."""

    param: Tensor
    name: str
    dims: tuple[int, ...]
    owners: list[nn.Module]
    clone: bool = False


@dataclass
class HookPlan:
    """What the hook engine does for one model.

    Attributes:
        modules: hooked modules.
        free: tracked free parameters.
        fallback: canonical parameter name -> why hooks cannot score it (these use
            per-sample weight gradients).
        paired: whether the batch layout was checked on two samples.
    """

    modules: list[ModuleCapture]
    free: list[FreeParam]
    fallback: dict[str, str]
    paired: bool
