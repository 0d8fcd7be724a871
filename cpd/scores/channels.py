"""From groups to per-channel sums over parameter elements.

Every criterion in this package reduces some element-wise tensor (``w * grad``,
``w**2 * diag(H)``, ``|w|**p``) to one number per channel of a group: the sum over
all parameter elements that belong to the channel, across every parameter member
of the group. This module turns :class:`~cpd.groups.group.Group` objects into
index plans once (:func:`build_plans`) and performs that reduction
(:func:`channel_sum`).

Buffers (``Member.is_param == False``) never enter a plan: scores read parameters
only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cpd.groups.group import Group

__all__ = ["MemberPlan", "GroupPlan", "resolve_params", "build_plans", "channel_sum", "per_position", "gather_channels"]


@dataclass(frozen=True)
class MemberPlan:
    """One parameter member of a group, ready for reduction.

    Attributes:
        name: canonical parameter name (first name under which the tensor appears in
            ``model.named_parameters()``; tied parameters share one canonical name).
        dim: the parameter dimension the channels index.
        index: long tensor of shape ``(size, width)``; row ``c`` lists the positions
            along ``dim`` that belong to channel ``c``.
    """

    name: str
    dim: int
    index: Tensor


@dataclass(frozen=True)
class GroupPlan:
    """The parameter members of one group (buffers dropped).

    Attributes:
        id: the group id.
        size: number of channels.
        members: parameter members; may be empty (then every score is zero).
    """

    id: int
    size: int
    members: tuple[MemberPlan, ...]


def resolve_params(model: nn.Module) -> tuple[dict[str, nn.Parameter], dict[str, str]]:
    """Map every parameter name of ``model`` to its tensor and canonical name.

    Returns:
        ``(params, canonical)``: ``params`` maps canonical names to parameters;
        ``canonical`` maps every name (aliases of tied parameters included) to the
        canonical name. Tied parameters are one tensor, so their gradient is the
        total over all uses; keying them once avoids counting it twice.
    """
    params: dict[str, nn.Parameter] = {}
    canonical: dict[str, str] = {}
    by_id: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first = by_id.setdefault(id(p), name)
        canonical[name] = first
        if first == name:
            params[name] = p
    return params, canonical


def build_plans(model: nn.Module, groups: Iterable[Group]) -> dict[int, GroupPlan]:
    """Validate ``groups`` against ``model`` and build one :class:`GroupPlan` per group.

    Raises:
        ValueError: on a duplicate group id, a parameter member whose name is not a
            parameter of ``model``, a ``dim`` out of range, a channel count that does
            not match ``group.size``, ragged ``index`` rows, or positions out of range.
    """
    params, canonical = resolve_params(model)
    plans: dict[int, GroupPlan] = {}
    for group in groups:
        if group.id in plans:
            raise ValueError(f"duplicate group id {group.id}")
        members: list[MemberPlan] = []
        for m in group.params():
            where = f"group {group.id}, member {m.name!r} (dim {m.dim})"
            if m.name not in canonical:
                raise ValueError(
                    f"{where}: not a parameter of the model; buffers must have is_param=False"
                )
            name = canonical[m.name]
            p = params[name]
            if not -p.ndim <= m.dim < p.ndim:
                raise ValueError(f"{where}: dim out of range for shape {tuple(p.shape)}")
            dim = m.dim % p.ndim
            if len(m.index) != group.size:
                raise ValueError(f"{where}: {len(m.index)} index rows for group size {group.size}")
            if len({len(row) for row in m.index}) > 1:
                raise ValueError(f"{where}: channels have different widths")
            width = len(m.index[0]) if m.index else 0
            index = torch.tensor(m.index, dtype=torch.long, device=p.device)
            index = index.reshape(group.size, width)
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= p.shape[dim]):
                raise ValueError(f"{where}: positions out of range [0, {p.shape[dim]})")
            members.append(MemberPlan(name=name, dim=dim, index=index))
        plans[group.id] = GroupPlan(id=group.id, size=group.size, members=tuple(members))
    return plans


def per_position(t: Tensor, dim: int, batched: bool) -> Tensor:
    """Sum ``t`` over every dimension except ``dim`` (and the leading batch dim).

    Args:
        t: shape ``param.shape`` or, if ``batched``, ``(N, *param.shape)``.
        dim: channel dimension of the parameter (not counting the batch dim).

    Returns:
        Shape ``(L,)`` or ``(N, L)`` with ``L = param.shape[dim]``.
    """
    lead = 1 if batched else 0
    others = [d for d in range(lead, t.ndim) if d != dim + lead]
    # torch.sum(dim=[]) would sum everything, so a 1-D parameter skips the sum.
    return t.sum(dim=others) if others else t


def channel_sum(plan: GroupPlan, tensors: Mapping[str, Tensor], *, batched: bool = False) -> Tensor:
    """Per-channel sum of element-wise values over all parameter members of a group.

    Args:
        plan: the group.
        tensors: canonical parameter name -> tensor of shape ``param.shape``, or
            ``(N, *param.shape)`` if ``batched`` (e.g. ``w * grad`` per sample).
        batched: whether the tensors carry a leading sample dimension.

    Returns:
        float64 tensor of shape ``(size,)``, or ``(N, size)`` if ``batched``:
        ``out[..., c] = sum over members m, positions p in m.index[c], and all
        other dimensions of tensors[m.name]``. A group without parameter members
        gives zeros (shape ``(size,)`` or ``(1, size)`` when batched: it broadcasts).
    """
    out: Tensor | None = None
    for m in plan.members:
        # Reduce in the tensor's dtype (cheap, big tensors) then gather in float64
        # (small vectors) so the per-channel accumulation is exact enough to compare
        # scores across groups of very different sizes.
        vec = per_position(tensors[m.name], m.dim, batched).to(torch.float64)
        part = vec[..., m.index.to(vec.device)].sum(-1)  # (..., size, width) -> (..., size)
        out = part if out is None else out + part
    if out is None:
        shape = (1, plan.size) if batched else (plan.size,)
        return torch.zeros(shape, dtype=torch.float64)
    return out


def gather_channels(plan: GroupPlan, vectors: Mapping[tuple[str, int], Tensor], n: int) -> Tensor:
    """Per-sample channel sums from per-position vectors (what the hook engine yields).

    Args:
        plan: the group.
        vectors: ``(canonical name, dim) -> (N, param.shape[dim])``, e.g. per sample and
            position the sum of ``w * dL_n/dw`` over the other dims; every member of
            ``plan`` must have an entry.
        n: the number of samples ``N``.

    Returns:
        float64 ``(N, size)``: ``out[n, c] = sum over members m and positions p in
        m.index[c] of vectors[(m.name, m.dim)][n, p]`` (zeros for a group without
        parameter members).
    """
    out: Tensor | None = None
    for m in plan.members:
        vec = vectors[(m.name, m.dim)].to(torch.float64)
        part = vec[:, m.index.to(vec.device)].sum(-1)  # (N, size, width) -> (N, size)
        out = part if out is None else out + part
    return torch.zeros(n, plan.size, dtype=torch.float64) if out is None else out
