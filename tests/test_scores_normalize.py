"""Normalisation across groups and the global ranking."""

from __future__ import annotations

import pytest
import torch
from scores_models import F64, Heads, heads_group, mlp, mlp_group

from cpd.groups.group import Group, Member
from cpd.scores import channel_width, global_ranking, normalize_scores, param_cost


def groups() -> list[Group]:
    plain = Group(0, 3, [Member("w", 0, [[0], [1], [2]])])
    heads = Group(1, 2, [Member("q", 0, [[0, 1, 2, 3], [4, 5, 6, 7]]), Member("rm", 0, [[0], [1]], is_param=False)])
    frozen = Group(2, 2, [Member("v", 0, [[0], [1]])], prunable=False)
    return [plain, heads, frozen]


SCORES = {
    0: torch.tensor([3.0, 1.0, 2.0], dtype=F64),
    1: torch.tensor([8.0, 2.0], dtype=F64),
    2: torch.tensor([0.0, 0.5], dtype=F64),
}


def test_channel_width_uses_param_members() -> None:
    assert [channel_width(g) for g in groups()] == [1, 4, 1]
    assert channel_width(Group(3, 1, [Member("rm", 0, [[0, 1]], is_param=False)])) == 1


def test_normalize_by_width_size_and_cost() -> None:
    g = groups()
    by_width = normalize_scores(SCORES, g)
    torch.testing.assert_close(by_width[1], torch.tensor([2.0, 0.5], dtype=F64))
    torch.testing.assert_close(by_width[0], SCORES[0])
    by_size = normalize_scores(SCORES, g, by="size")
    torch.testing.assert_close(by_size[0], SCORES[0] / 3)
    with_cost = normalize_scores(SCORES, g, by="none", cost={0: 2.0})
    torch.testing.assert_close(with_cost[0], SCORES[0] / 2)
    torch.testing.assert_close(with_cost[1], SCORES[1])  # no cost given: unchanged
    with pytest.raises(ValueError, match="> 0"):
        normalize_scores(SCORES, g, cost={0: 0.0})
    with pytest.raises(ValueError, match="by must be"):
        normalize_scores(SCORES, g, by="numel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not among"):
        normalize_scores({9: torch.zeros(1)}, g)


def test_global_ranking_is_ascending_and_skips_frozen() -> None:
    ranking = global_ranking(SCORES, groups())
    assert ranking == [(1, 1, 0.5), (0, 1, 1.0), (0, 2, 2.0), (1, 0, 2.0), (0, 0, 3.0)]
    with_frozen = global_ranking(SCORES, groups(), prunable_only=False)
    assert with_frozen[0] == (2, 0, 0.0) and len(with_frozen) == 7


def test_param_cost_counts_elements_per_channel() -> None:
    # MLP hidden channel: a row of fc1.weight (5) + fc1.bias (1) + a column of fc2.weight (3).
    assert param_cost(mlp(), [mlp_group()]) == {0: 9.0}
    # Head: 4 rows of fc1.weight (4 each), 4 biases, 4 columns of fc2.weight (2 each).
    assert param_cost(Heads(), [heads_group()]) == {5: 16.0 + 4.0 + 8.0}
