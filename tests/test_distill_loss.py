"""DistillLoss: mixing, output kinds, feature terms, teacher under no_grad."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from cpd.distill import DistillLoss, LogitKD, logit_kd_loss, pixel_kd_loss
from cpd.tasks import build_task


def test_total_is_alpha_mix_of_kd_and_cross_entropy() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    targets = torch.tensor([0, 1, 2, 3])
    loss_fn = DistillLoss(LogitKD(3.0), F.cross_entropy, alpha=0.3)
    total, parts = loss_fn(student, teacher, targets)
    kd = logit_kd_loss(student, teacher, 3.0).item()
    ce = F.cross_entropy(student, targets).item()
    assert parts["kd"] == pytest.approx(kd, rel=1e-6)
    assert parts["task"] == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(0.3 * kd + 0.7 * ce, rel=1e-6)
    assert parts["total"] == pytest.approx(total.item())
    assert all(isinstance(v, float) for v in parts.values())


def test_reads_logits_from_any_output_kind_and_drops_task_without_targets() -> None:
    student, teacher = torch.randn(2, 3), torch.randn(2, 3)
    loss_fn = DistillLoss(LogitKD(2.0), F.cross_entropy, alpha=0.5)
    plain, _ = loss_fn(student, teacher)
    wrapped, parts = loss_fn({"logits": student}, (teacher, torch.zeros(1)))
    assert wrapped.item() == pytest.approx(plain.item())
    assert "task" not in parts and parts["total"] == pytest.approx(parts["kd"])


def test_feature_term_weighted_and_logged() -> None:
    s, t = torch.zeros(2, 3), torch.zeros(2, 3)
    teacher_feat = torch.zeros(1, 4, 2, 2)
    student_feat = torch.ones(1, 2, 2, 2)  # MSE 1 against kept teacher channels
    loss_fn = DistillLoss(LogitKD(), None, alpha=1.0, feature_weight=0.5)
    total, parts = loss_fn(s, t, None, features=[(student_feat, teacher_feat, [0, 3])])
    assert parts["feature"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(0.5)


def test_training_step_with_frozen_teacher_segmentation() -> None:
    torch.manual_seed(0)
    student = torch.nn.Conv2d(3, 4, 1)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    images = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[0, :4] = 255
    teacher.eval()
    with torch.no_grad():
        teacher_out = OrderedDict(out=teacher(images))
    loss_fn = build_task("segmentation", num_classes=4).distill_loss(alpha=0.6, temperature=2.0)
    total, parts = loss_fn(student(images), teacher_out, labels)
    expected = 0.6 * pixel_kd_loss(student(images), teacher_out["out"], labels, 2.0) + 0.4 * F.cross_entropy(
        student(images), labels, ignore_index=255
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert set(parts) == {"kd", "task", "total"}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DistillLoss(LogitKD(), alpha=-0.1)
    with pytest.raises(ValueError, match="feature_weight"):
        DistillLoss(LogitKD(), feature_weight=-1.0)
