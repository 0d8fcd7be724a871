"""The rehearsal is skipped exactly where it cannot change the groups, and the groups
are the same either way."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from masking import built
from micro_zoo import Head, Norms, Residual, Transposed, example
from micro_zoo_hidden import (
    ChecksWidth,
    CrossAttention,
    DerivedHeadDim,
    HeadDimFromWidth,
    ReadsOtherShape,
)

import cpd
from cpd.groups.build import build_groups
from cpd.trace.recorder import trace


def _groups(m: nn.Module, rehearse: str | None) -> tuple[dict, dict]:
    """(the comb as JSON without its checks, the checks); ``None``: no rehearsal at all."""
    x = example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rehearse is None:
            comb = build_groups(trace(m, x), m)
        else:
            comb = build_groups(trace(m, x), m, (), x, rehearse=rehearse)
    j = comb.to_json()
    return j, j.pop("checks")


@pytest.mark.parametrize("cls", [Residual, Transposed, Norms], ids=lambda c: c.__name__)
def test_plain_cnn_skips_the_rehearsal(cls: type) -> None:
    m = built(cls)
    fast, checks = _groups(m, "auto")
    full, full_checks = _groups(m, "always")
    assert checks["rounds"] == 0 and checks["rehearsal"].startswith("not needed"), checks
    assert full_checks["rounds"] >= 1 and full_checks["fixes"] == []
    assert fast == full


@pytest.mark.parametrize("cls", [ReadsOtherShape, DerivedHeadDim, HeadDimFromWidth, ChecksWidth,
                                 CrossAttention], ids=lambda c: c.__name__)
def test_hidden_coupling_is_rehearsed(cls: type) -> None:
    """Models whose couplings only the rehearsal sees keep it, with the same result;
    for all but CrossAttention (a module rule settles it) skipping would be wrong."""
    m = built(cls)
    fast, checks = _groups(m, "auto")
    full, _ = _groups(m, "always")
    assert checks["rounds"] >= 1 and not checks["rehearsal"].startswith("not needed"), checks
    assert fast == full
    if cls is not CrossAttention:
        assert checks["fixes"] and _groups(m, None)[0] != full


class _CheckedConv(nn.Conv2d):
    """A library conv whose subclass adds Python of its own: not trusted as library code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError("width changed")
        return super().forward(x)


class _Checked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), _CheckedConv(8, 6, 3, padding=1)
        self.head = Head(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.b(F.relu(self.a(x)))))


def test_overridden_library_forward_is_rehearsed() -> None:
    m = _Checked().eval()
    fast, checks = _groups(m, "auto")
    assert checks["rounds"] >= 1 and "b.in_channels = 8" in checks["rehearsal"]
    assert fast == _groups(m, "always")[0]


def test_comb_reports_the_skip() -> None:
    m, x = built(Residual), example()
    assert cpd.comb(m, x).checks["rehearsal"].startswith("not needed")
    assert cpd.comb(built(ReadsOtherShape), x).checks["rounds"] >= 1


def test_bad_rehearse_value() -> None:
    m, x = built(Residual), example()
    with pytest.raises(ValueError, match="rehearse must be"):
        build_groups(trace(m, x), m, (), x, rehearse="sometimes")
