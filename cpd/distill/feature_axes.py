"""Where a tapped layer's channels are: the channel axis of its output, and which teacher
channels a pruned student kept there.

Both are facts about the module *type* (a ``Conv2d`` writes ``(B, C, H, W)`` maps whose
channel ``c`` is row ``c`` of its weight; a ``Linear`` writes ``(..., D)`` whose feature
``d`` is row ``d`` of its weight), so they live in a registry keyed by module type,
looked up along the type's MRO (subclasses of ``nn.Conv2d`` inherit its entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from cpd.groups.indexing import kept_positions

if TYPE_CHECKING:
    from cpd.plan.plan import Plan

__all__ = ["FeatureAxis", "feature_axis", "kept_channels", "register_feature_axis"]


@dataclass(frozen=True)
class FeatureAxis:
    """How a module type's output channels are laid out.

    Attributes:
        dim: channel axis of the module's output tensor: 1 for ``(B, C, ...)`` maps,
            -1 for ``(..., D)`` tokens / features.
        sources: ``(tensor name relative to the module, dim)`` pairs whose positions
            are the output channels, tried in order (a bias may be absent, a buffer
            stands in for a norm without affine parameters).
    """

    dim: int
    sources: tuple[tuple[str, int], ...]


_AXES: dict[type[nn.Module], FeatureAxis] = {}


def register_feature_axis(module_type: type[nn.Module], dim: int, sources: Sequence[tuple[str, int]]) -> None:
    """Declare the output channel axis of ``module_type`` (and of its subclasses).

    Args:
        module_type: e.g. ``nn.Conv2d``.
        dim: channel axis of its output (1 or -1 usually).
        sources: ``(tensor, dim)`` pairs of the module whose positions are those channels.
    """
    _AXES[module_type] = FeatureAxis(int(dim), tuple((str(n), int(d)) for n, d in sources))


_WEIGHT_ROWS = (("weight", 0), ("bias", 0))
for _t in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_feature_axis(_t, 1, _WEIGHT_ROWS)  # weight (C_out, C_in / groups, *k)
for _t in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    # weight (C_in, C_out / groups, *k): dim 1 is the output only with groups == 1 (the
    # width check in kept_channels skips it otherwise); the bias is exact either way.
    register_feature_axis(_t, 1, (("bias", 0), ("weight", 1)))
for _t in (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm):
    register_feature_axis(_t, 1, (("weight", 0), ("bias", 0), ("running_mean", 0)))
register_feature_axis(nn.Linear, -1, _WEIGHT_ROWS)  # weight (D_out, D_in)
register_feature_axis(nn.LayerNorm, -1, (("weight", 0), ("bias", 0)))
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    register_feature_axis(nn.RMSNorm, -1, (("weight", 0),))


def feature_axis(module: nn.Module) -> FeatureAxis | None:
    """The registered axis of ``module``'s type (nearest registered base class), or None."""
    for cls in type(module).__mro__:
        if cls in _AXES:
            return _AXES[cls]
    return None


def _out_width(module: nn.Module) -> int | None:
    """Output channels as the module states them, where it does (for a sanity check)."""
    for attr in ("out_channels", "out_features", "num_features", "num_channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    return int(shape[-1]) if isinstance(shape, (tuple, list)) and shape else None


def kept_channels(plan: Plan, model: nn.Module, layers: Sequence[str]) -> dict[str, Tensor | None]:
    """Which teacher channels each tapped layer's output keeps under ``plan``.

    The plan's per-tensor trees (``plan.dims``, the comb's) say which group owns each
    position of each parameter dim; :func:`~cpd.groups.indexing.kept_positions` maps
    the groups' kept channels to positions, so a layer whose output is cut from
    several groups (a ``cat``) or from whole heads is handled too.

    Args:
        plan: a plan in the original model's index space (``IterativePruner.plan()``,
            ``PruneResult.plan``).
        model: the original architecture (teacher), for the module types; only its
            module names and types are read.
        layers: module names, as in ``model.named_modules()``.

    Returns:
        ``{layer: LongTensor of kept channel indices, sorted}``; ``None`` where every
        channel is kept (no pruned group touches the layer's output).

    Raises:
        ValueError: an unknown layer, a type without a registered axis, or a layer
            whose output channels the plan does not describe.
    """
    modules = dict(model.named_modules())
    out: dict[str, Tensor | None] = {}
    for name in layers:
        module = modules.get(name)
        axis = feature_axis(module) if module is not None else None
        if axis is None:
            raise ValueError(f"feature layer {name!r} is not a module with a registered channel axis "
                             "in this model; see cpd.distill.register_feature_axis")
        width = _out_width(module)
        for tensor, dim in axis.sources:
            trees = plan.dims.get(f"{name}.{tensor}" if name else tensor)
            if trees is None or dim >= len(trees) or (width is not None and trees[dim].size != width):
                continue
            kept = kept_positions(trees[dim], plan.keep)
            out[name] = None if len(kept) == trees[dim].size else torch.tensor(kept, dtype=torch.long)
            break
        else:
            raise ValueError(f"feature layer {name!r} ({type(module).__name__}): the plan has none of "
                             f"{[t for t, _ in axis.sources]} with its {width} output channels, so its kept "
                             "channels are unknown; tap a layer with weights (a conv, linear or affine norm)")
    return out
