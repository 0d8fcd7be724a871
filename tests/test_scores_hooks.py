"""The hook engine of ``hessian`` (one forward, one backward) against per-sample gradients."""

from __future__ import annotations

import itertools
import warnings

import micro_zoo as mz
import pytest
import torch
import torch.nn.functional as F
from scores_hook_models import (
    BatchStats,
    Branchy,
    InplaceReuse,
    Leaky,
    Namespaced,
    SubclassNorms,
    Tokens,
    batch_stats_group,
    leaky_group,
    mlp_group,
    randomize_affine,
    randomize_bn,
    token_groups,
)
from torch import Tensor, nn

import cpd
from cpd.groups.group import Group, Member
from cpd.scores import get_criterion
from cpd.scores.activation_grads import HooksUnsupported

# float32 models: batched kernels and the two engines round differently (observed
# ~1e-6 relative); a wrong formula is off by O(1).
RTOL = 1e-4


def scores(model: nn.Module, groups: list[Group], batches: list[tuple], loss_fn, method: str, **opts) -> dict:
    crit = get_criterion("hessian", method=method, **opts).prepare(model, groups)
    for x, y in batches:
        crit.accumulate(model, x, y, loss_fn)
    return crit.scores(), crit


def assert_same(got: dict, ref: dict, rtol: float = RTOL) -> None:
    assert got.keys() == ref.keys()
    for gid, r in ref.items():
        assert torch.all(r >= 0) and r.max() > 0  # a non-trivial reference
        torch.testing.assert_close(got[gid], r, rtol=rtol, atol=rtol * float(r.max()))


def ce(out: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(out, y)


@pytest.mark.parametrize("cls", mz.ALL, ids=lambda c: c.__name__)
def test_hooks_equal_vmap_on_the_micro_zoo(cls) -> None:
    torch.manual_seed(0)
    model = randomize_bn(cls()).eval()
    x = mz.example(5)
    groups = cpd.comb(model, x[:2]).prunable(head_dim=True)
    with torch.no_grad():
        out = model(x)
    y = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]), generator=torch.Generator().manual_seed(2))
    hooks, crit = scores(model, groups, [(x, y)], ce, "hooks")
    assert crit._hooks.plan.fallback == {}  # every member expressed by a rule
    assert_same(hooks, scores(model, groups, [(x, y)], ce, "vmap")[0])


def test_hooks_equal_vmap_on_a_hugging_face_vit() -> None:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                    image_size=16, patch_size=8, num_labels=3)
    model = ViTForImageClassification(cfg).eval()
    x = torch.randn(4, 3, 16, 16)
    groups = cpd.comb(model, {"pixel_values": x[:1]}).prunable(head_dim=True)
    batch = [({"pixel_values": x}, torch.tensor([0, 1, 2, 1]))]

    def loss_fn(out, y: Tensor) -> Tensor:  # a ModelOutput, sliced per sample
        return F.cross_entropy(out.logits, y)

    hooks, crit = scores(model, groups, batch, loss_fn, "hooks")
    plan = crit._hooks.plan
    assert plan.fallback == {}
    assert {f.name for f in plan.free} == {"vit.embeddings.cls_token", "vit.embeddings.position_embeddings"}
    assert_same(hooks, scores(model, groups, batch, loss_fn, "vmap")[0])


def test_inplace_relu_reused_module_and_free_parameters() -> None:
    torch.manual_seed(0)
    model = randomize_bn(InplaceReuse()).eval()
    x = torch.randn(6, 3, 8, 8)
    groups = cpd.comb(model, x[:1]).prunable()
    assert any(m.name in ("pos", "gamma") for g in groups for m in g.params())
    y = torch.randint(0, 5, (6,))
    hooks, crit = scores(model, groups, [(x, y)], ce, "hooks")
    plan = crit._hooks.plan
    assert plan.fallback == {}
    assert {f.name for f in plan.free} >= {"pos", "gamma"}
    stem = next(c for c in plan.modules if c.module is model.stem)
    assert stem.clone_y  # its output is changed in place by the activation: copied on capture
    assert_same(hooks, scores(model, groups, [(x, y)], ce, "vmap")[0])


def test_norm_subclasses_through_functional_rules() -> None:
    torch.manual_seed(0)
    model = randomize_affine(SubclassNorms())
    x, y = torch.randn(5, 3, 6, 6), torch.randint(0, 5, (5,))
    groups = cpd.comb(model, x[:1]).prunable()
    hooks, crit = scores(model, groups, [(x, y)], ce, "hooks")
    plan = crit._hooks.plan
    assert plan.fallback == {}
    assert {f.name for f in plan.free} == {"ln.weight", "ln.bias", "gn.weight", "gn.bias"}
    assert_same(hooks, scores(model, groups, [(x, y)], ce, "vmap")[0])


def test_segmentation_loss_with_ignored_pixels() -> None:
    # Per-sample losses are means over different numbers of valid pixels: the hook
    # engine must differentiate each sample's own mean, like a batch of one.
    torch.manual_seed(0)
    model = randomize_bn(mz.Transposed()).eval()
    x = mz.example(4)
    y = torch.randint(0, 4, (4, 8, 8), generator=torch.Generator().manual_seed(3))
    y[0, :, :6] = 255
    y[1, :7] = 255
    y[3, 0, 0] = 255
    groups = cpd.comb(model, x[:1]).prunable()

    def seg_loss(out: Tensor, t: Tensor) -> Tensor:
        return F.cross_entropy(out, t, ignore_index=255)

    assert_same(scores(model, groups, [(x, y)], seg_loss, "hooks")[0],
                scores(model, groups, [(x, y)], seg_loss, "vmap")[0])


def test_embedding_layernorm_and_rows() -> None:
    torch.manual_seed(0)
    model = Tokens()
    ids = torch.randint(0, 11, (5, 7), generator=torch.Generator().manual_seed(4))
    ids[0, :3] = 0  # padding: its row gets no gradient
    y = torch.randint(0, 3, (5,))
    hooks, crit = scores(model, token_groups(), [(ids, y)], ce, "hooks")
    assert crit._hooks.plan.fallback == {}
    ref = scores(model, token_groups(), [(ids, y)], ce, "vmap")[0]
    assert hooks[1][0] == 0 and ref[1][0] == 0
    for gid in ref:
        torch.testing.assert_close(hooks[gid], ref[gid], rtol=RTOL, atol=RTOL * float(ref[gid].max()))


def test_streaming_invariance() -> None:
    # float64: the split changes only the summation order.
    torch.manual_seed(0)
    model = randomize_bn(InplaceReuse()).double().eval()
    x = torch.randn(7, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    groups = cpd.comb(model, x[:1]).prunable()
    whole = scores(model, groups, [(x, y)], ce, "hooks")[0]
    for cuts in ([3], [1, 2, 6], list(range(1, 7))):
        edges = [0, *cuts, 7]
        got = scores(model, groups, [(x[a:b], y[a:b]) for a, b in itertools.pairwise(edges)], ce, "hooks")[0]
        assert_same(got, whole, rtol=1e-9)


def test_parameter_used_outside_its_module_falls_back_for_that_parameter() -> None:
    torch.manual_seed(0)
    model = Leaky()
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    with pytest.warns(RuntimeWarning, match="fc.weight"):
        hooks, crit = scores(model, [leaky_group()], [(x, y)], ce, "hooks")
    assert set(crit._hooks.plan.fallback) == {"fc.weight"}
    assert_same(hooks, scores(model, [leaky_group()], [(x, y)], ce, "vmap")[0])


def test_frozen_parameters_are_still_scored() -> None:
    torch.manual_seed(0)
    model = randomize_bn(InplaceReuse()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    groups = cpd.comb(model, x[:1]).prunable()
    hooks = scores(model, groups, [(x, y)], ce, "hooks")[0]
    assert not any(p.requires_grad for p in model.parameters())  # flags restored after the probe
    assert_same(hooks, scores(model, groups, [(x, y)], ce, "vmap")[0])


def test_no_side_effects_on_the_model() -> None:
    model = randomize_bn(InplaceReuse()).train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    scores(model, cpd.comb(model.eval(), x[:1]).prunable(), [(x, y)], ce, "hooks")
    model.train()
    scores(model, cpd.comb(model, x[:1]).prunable(), [(x, y)], ce, "hooks")
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "model, group, x, match",
    [
        (Namespaced(), mlp_group(), torch.randn(5, 5), "cannot be split per sample"),
        (Branchy(), Group(0, 2, [Member("fc.weight", 0, [[0], [1]])]),
         torch.randn(5, 3), "reads tensor values"),
        (BatchStats(), batch_stats_group(), torch.randn(5, 3, 6, 6), "samples interact"),
    ],
    ids=["unsliceable-output", "data-dependent", "batch-statistics"],
)
def test_auto_falls_back_once_with_a_warning(model: nn.Module, group: Group, x: Tensor, match: str) -> None:
    torch.manual_seed(0)
    y = torch.randn(len(x), 2 if not isinstance(model, Namespaced) else 3)

    def loss_fn(out, t: Tensor) -> Tensor:
        out = out.logits if hasattr(out, "logits") else out
        return 0.5 * (out - t).square().sum()

    with pytest.raises(HooksUnsupported, match=match):
        scores(model, [group], [(x, y)], loss_fn, "hooks")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        auto = scores(model, [group], [(x, y), (x[:3], y[:3])], loss_fn, "auto")[0]
    hook_warnings = [w for w in seen if "hook engine cannot score" in str(w.message)]
    assert len(hook_warnings) == 1 and match in str(hook_warnings[0].message)
    ref = scores(model, [group], [(x, y), (x[:3], y[:3])], loss_fn, "loop")[0]
    assert_same(auto, ref, rtol=1e-5)


def test_method_is_validated() -> None:
    with pytest.raises(ValueError, match="'hooks'"):
        get_criterion("hessian", method="fast")
