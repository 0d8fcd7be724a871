"""Streaming invariance: per-sample ``hessian`` scores do not depend on the batch split."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scores_models import mean_mse, mlp, mlp_data, mlp_group, sum_mse

from cpd.scores import get_criterion

N = 8
# Same per-sample terms summed in a different order: float64 rounding only.
RTOL = 1e-10

MODEL = mlp()
GROUPS = [mlp_group()]
X, Y = mlp_data(N)


def scores_for(splits: list[int], loss_fn, **options) -> torch.Tensor:
    crit = get_criterion("hessian", **options).prepare(MODEL, GROUPS)
    start = 0
    for stop in [*splits, N]:
        crit.accumulate(MODEL, X[start:stop], Y[start:stop], loss_fn)
        start = stop
    assert crit.num_samples == N and crit.num_batches == len(splits) + 1
    return crit.scores()[0]


@pytest.mark.parametrize("loss_fn", [sum_mse, mean_mse], ids=["sum", "mean"])
def test_one_batch_equals_halves_equals_singletons(loss_fn) -> None:
    whole = scores_for([], loss_fn)
    assert torch.all(whole > 0)
    torch.testing.assert_close(scores_for([4], loss_fn), whole, rtol=RTOL, atol=0)
    torch.testing.assert_close(scores_for(list(range(1, N)), loss_fn), whole, rtol=RTOL, atol=0)


def test_sum_and_mean_losses_give_the_same_per_sample_scores() -> None:
    torch.testing.assert_close(scores_for([3], mean_mse), scores_for([5], sum_mse), rtol=RTOL, atol=0)


def test_batch_form_depends_on_the_split() -> None:
    # Documented: squaring the mini-batch gradient is not split-invariant.
    whole = scores_for([], sum_mse, per_sample=False)
    halves = scores_for([4], sum_mse, per_sample=False)
    assert not torch.allclose(whole, halves, rtol=1e-3)


WHOLE = {"sum": scores_for([], sum_mse), "mean": scores_for([], mean_mse)}


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.sets(st.integers(min_value=1, max_value=N - 1)),
    loss=st.sampled_from(["sum", "mean"]),
    chunk_size=st.integers(min_value=1, max_value=N),
)
def test_any_split_gives_the_same_scores(cuts: set[int], loss: str, chunk_size: int) -> None:
    loss_fn = sum_mse if loss == "sum" else mean_mse
    got = scores_for(sorted(cuts), loss_fn, chunk_size=chunk_size)
    torch.testing.assert_close(got, WHOLE[loss], rtol=RTOL, atol=0)
