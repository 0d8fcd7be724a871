"""Per-module-type attribute fixers, run after the tensors were sliced.

Each fixer re-derives a module's size attributes from its (new) parameters, so
that ``repr`` is right and code that reads ``in_channels`` keeps working. The
registry is keyed by exact module type; subclasses are matched through the MRO.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

Fixer = Callable[[nn.Module], None]
FIXERS: dict[type, Fixer] = {}
# Attributes of known module types that follow a size literal seen in the trace
# (everything else of theirs is re-derived from the weights by the fixer).
TRACED_ATTRS: dict[type, frozenset[str]] = {
    nn.Conv1d: frozenset({"groups"}), nn.Conv2d: frozenset({"groups"}),
    nn.Conv3d: frozenset({"groups"}), nn.ConvTranspose1d: frozenset({"groups"}),
    nn.ConvTranspose2d: frozenset({"groups"}), nn.ConvTranspose3d: frozenset({"groups"}),
    nn.GroupNorm: frozenset({"num_groups"}),
    nn.MultiheadAttention: frozenset({"num_heads"}),
}


def fixer(*types: type) -> Callable[[Fixer], Fixer]:
    def deco(fn: Fixer) -> Fixer:
        for t in types:
            if t in FIXERS:
                raise ValueError(f"duplicate fixer for {t}")
            FIXERS[t] = fn
        return fn

    return deco


def has_fixer(m: nn.Module) -> bool:
    return any(t in FIXERS for t in type(m).__mro__)


def traced_attrs(m: nn.Module) -> frozenset[str] | None:
    """Attributes binding may set on ``m``: None means any (an unknown module type)."""
    if not has_fixer(m):
        return None
    for t in type(m).__mro__:
        if t in TRACED_ATTRS:
            return TRACED_ATTRS[t]
    return frozenset()


def fix_module(m: nn.Module) -> None:
    for t in type(m).__mro__:
        fn = FIXERS.get(t)
        if fn is not None:
            fn(m)
            return


@fixer(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Module) -> None:
    m.out_channels = m.weight.shape[0]
    m.in_channels = m.weight.shape[1] * m.groups


@fixer(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_t(m: nn.Module) -> None:
    m.in_channels = m.weight.shape[0]
    m.out_channels = m.weight.shape[1] * m.groups


@fixer(nn.Linear)
def _linear(m: nn.Module) -> None:
    m.out_features, m.in_features = m.weight.shape


@fixer(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
       nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def _bn(m: nn.Module) -> None:
    t = m.weight if m.weight is not None else m.running_mean
    if t is not None:
        m.num_features = t.shape[0]


@fixer(nn.LayerNorm)
def _ln(m: nn.Module) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


@fixer(nn.RMSNorm)
def _rms(m: nn.Module) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


@fixer(nn.GroupNorm)
def _gn(m: nn.Module) -> None:
    if m.weight is not None:
        m.num_channels = m.weight.shape[0]


@fixer(nn.Embedding)
def _emb(m: nn.Module) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


@fixer(nn.PReLU)
def _prelu(m: nn.Module) -> None:
    m.num_parameters = m.weight.shape[0]


@fixer(nn.MultiheadAttention)
def _mha(m: nn.Module) -> None:
    if m.in_proj_weight is not None:
        m.embed_dim = m.in_proj_weight.shape[1]
        m.kdim = m.vdim = m.embed_dim
    else:  # separate projections: key and value widths are their own (kdim, vdim)
        m.embed_dim = m.q_proj_weight.shape[1]
        m.kdim, m.vdim = m.k_proj_weight.shape[1], m.v_proj_weight.shape[1]
    m.head_dim = m.embed_dim // m.num_heads


def drop_caches(model: nn.Module) -> None:
    """Let modules drop what they cached from their weights, by their own rule.

    Some modules cache tensors derived from parameters in eval mode (LeViT's
    attention biases) and clear the cache when switched to training. Cycling the
    mode, then restoring it per module, runs that rule: after pruning the cache
    would hold the old shapes, and before a trace it would hide the ops that read
    the weights.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.train(True)
    for m, was in modes:
        m.training = was
