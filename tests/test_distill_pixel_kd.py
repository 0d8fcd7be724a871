"""Per-pixel KD for segmentation: ignore pixels, resizing, hand values."""

import math

import pytest
import torch

from cpd.distill import PixelKD, pixel_kd_loss

HAND_KL = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Student uniform everywhere; teacher (0.75, 0.25) at pixel (0, 0), uniform at (0, 1)."""
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.zeros(1, 2, 1, 2)
    teacher[0, 0, 0, 0] = math.log(3.0)
    return student, teacher


def test_identical_logits_give_zero() -> None:
    logits = torch.randn(2, 5, 6, 7)
    labels = torch.randint(0, 5, (2, 6, 7))
    assert pixel_kd_loss(logits, logits.clone(), labels).item() == pytest.approx(0.0, abs=1e-6)


def test_hand_case_mean_over_all_pixels_without_labels() -> None:
    student, teacher = _pair()
    assert pixel_kd_loss(student, teacher).item() == pytest.approx(HAND_KL / 2, rel=1e-5)


def test_ignored_pixels_are_excluded() -> None:
    student, teacher = _pair()
    labels = torch.tensor([[[0, 255]]])
    assert pixel_kd_loss(student, teacher, labels).item() == pytest.approx(HAND_KL, rel=1e-5)
    labels = torch.tensor([[[255, 1]]])
    assert pixel_kd_loss(student, teacher, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_changing_logits_at_ignored_pixels_does_not_change_loss() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    labels = torch.randint(0, 4, (2, 5, 5))
    labels[:, :2] = 11
    base = pixel_kd_loss(student, teacher, labels, ignore_index=11)
    student2, teacher2 = student.clone(), teacher.clone()
    student2[:, :, :2] = 50 * torch.randn(2, 4, 2, 5)
    teacher2[:, :, :2] = -30.0
    assert pixel_kd_loss(student2, teacher2, labels, ignore_index=11).item() == pytest.approx(base.item(), rel=1e-6)
    # ...whereas a change at a labelled pixel does.
    student2[:, :, 4] += 3 * torch.randn(2, 4, 5)
    assert pixel_kd_loss(student2, teacher2, labels, ignore_index=11).item() != pytest.approx(base.item())


def test_logits_resized_to_label_size() -> None:
    # A spatially constant map is unchanged by bilinear resizing, so a low-resolution
    # student must give exactly the loss of a full-resolution one.
    col = torch.randn(1, 3, 1, 1)
    teacher = torch.randn(1, 3, 1, 1).expand(1, 3, 8, 8).contiguous()
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    low = pixel_kd_loss(col.expand(1, 3, 2, 2), teacher[..., ::4, ::4], labels)
    full = pixel_kd_loss(col.expand(1, 3, 8, 8), teacher, labels)
    assert low.item() == pytest.approx(full.item(), rel=1e-6)


def test_temperature_squared_scaling() -> None:
    student, teacher = _pair()
    loss = PixelKD(temperature=2.0, ignore_index=255)(student, teacher * 2, torch.tensor([[[0, 1]]]))
    assert loss.item() == pytest.approx(4 * HAND_KL / 2, rel=1e-5)


def test_all_ignored_gives_zero_with_gradient_path() -> None:
    student = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = pixel_kd_loss(student, torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert student.grad is not None and torch.all(student.grad == 0)
