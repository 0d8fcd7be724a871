"""Feature KD against the teacher's kept channels."""

import pytest
import torch

from cpd.distill import feature_kd_loss, mean_feature_kd


def test_student_equal_to_kept_teacher_channels_gives_zero() -> None:
    teacher = torch.randn(2, 6, 3, 3)
    kept = torch.tensor([0, 2, 5])
    assert feature_kd_loss(teacher[:, kept].clone(), teacher, kept).item() == 0.0
    # The wrong channels are penalised.
    assert feature_kd_loss(teacher[:, [1, 3, 4]].clone(), teacher, kept).item() > 0.1


def test_value_is_mse_at_kept_channels() -> None:
    teacher = torch.zeros(1, 4, 2, 2)
    teacher[:, 1] = 5.0  # a pruned channel: must not matter
    student = torch.full((1, 2, 2, 2), 2.0)
    assert feature_kd_loss(student, teacher, [0, 2]).item() == pytest.approx(4.0)


def test_token_features_along_last_dim_and_no_pruning() -> None:
    teacher = torch.randn(2, 5, 8)
    assert feature_kd_loss(teacher[..., [1, 7]] + 1.0, teacher, [1, 7], dim=-1).item() == pytest.approx(1.0)
    assert feature_kd_loss(teacher + 2.0, teacher, None).item() == pytest.approx(4.0)


def test_mismatch_error_and_teacher_not_updated() -> None:
    teacher = torch.randn(1, 4, 2, 2, requires_grad=True)
    with pytest.raises(ValueError, match="kept"):
        feature_kd_loss(torch.zeros(1, 3, 2, 2), teacher, [0, 1])
    student = torch.zeros(1, 2, 2, 2, requires_grad=True)
    feature_kd_loss(student, teacher, [0, 1]).backward()
    assert teacher.grad is None and student.grad is not None


def test_masked_student_of_full_width_is_compared_at_kept_channels_only() -> None:
    teacher = torch.randn(2, 6, 3, 3)
    kept = [0, 2, 5]
    masked = teacher.clone()
    masked[:, [1, 3, 4]] = 0.0  # removed channels held at zero
    assert feature_kd_loss(masked, teacher, kept).item() == 0.0
    assert feature_kd_loss(masked, teacher, None).item() > 0.1  # without kept the zeros count
    tokens = torch.randn(2, 5, 4)
    masked_tokens = tokens.clone()
    masked_tokens[..., 1] = 7.0
    assert feature_kd_loss(masked_tokens, tokens, [0, 2, 3], dim=-1).item() == 0.0


def test_mean_over_pairs_takes_an_optional_dim() -> None:
    conv, tokens = torch.zeros(1, 4, 2, 2), torch.zeros(2, 3, 5)
    pairs = [(torch.ones(1, 2, 2, 2), conv, [0, 1]), (torch.full((2, 3, 2), 3.0), tokens, [1, 4], -1)]
    assert mean_feature_kd(pairs).item() == pytest.approx((1.0 + 9.0) / 2)
    with pytest.raises(ValueError, match="at least one"):
        mean_feature_kd([])
