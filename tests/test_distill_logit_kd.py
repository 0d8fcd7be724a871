"""Logit KD (Hinton) and the KD/task mixer against hand-computed values."""

import math

import pytest
import torch

from cpd.distill import LogitKD, kl_per_sample, logit_kd_loss, mix_losses

# Teacher probabilities (0.75, 0.25) against a uniform student.
HAND_KL = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)


def test_identical_logits_give_zero() -> None:
    logits = torch.randn(5, 7)
    assert logit_kd_loss(logits, logits.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_two_class_case_by_hand() -> None:
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert logit_kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(HAND_KL, rel=1e-5)


def test_temperature_squared_scaling() -> None:
    # Doubling the teacher logits at T=2 gives the same softened teacher as T=1, so only
    # the T^2 factor differs.
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    assert logit_kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * HAND_KL, rel=1e-5)


def test_batch_mean_and_direction() -> None:
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert logit_kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(HAND_KL / 2, rel=1e-5)
    # KL(teacher || student), not the reverse: swapping the roles gives a different value.
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    per = kl_per_sample(teacher[:1], student[:1])
    assert per.item() == pytest.approx(reverse, rel=1e-5)


def test_gradient_reaches_student_only() -> None:
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    LogitKD(temperature=2.0)(student, teacher, torch.tensor([0, 1, 2])).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_shape_and_temperature_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        logit_kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        logit_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)


def test_mix_losses() -> None:
    kd, task = torch.tensor(2.0), torch.tensor(10.0)
    assert mix_losses(kd, task, 0.25).item() == pytest.approx(0.25 * 2 + 0.75 * 10)
    assert mix_losses(kd, torch.tensor(float("nan")), 1.0).item() == 2.0
    assert mix_losses(torch.tensor(float("inf")), task, 0.0).item() == 10.0
    with pytest.raises(ValueError, match="alpha"):
        mix_losses(kd, task, 1.5)
