"""Feature KD against the teacher's kept channels."""

import pytest
import torch

from cpd.distill import feature_kd_loss


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
