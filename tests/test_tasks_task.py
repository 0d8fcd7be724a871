"""One training/evaluation loop written once, driven by build_task for both tasks."""

import pytest
import torch
from torch import nn

from cpd.tasks import ClassificationTask, SegmentationTask, Task, build_task, logits_of


class _Seg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # predicts at half resolution

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def _loop(task: Task, student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The loop the project writes once: distil one step, then evaluate."""
    loss_fn = task.distill_loss(alpha=0.5)
    teacher.eval()
    with torch.no_grad():
        teacher_out = teacher(x)
    loss, parts = loss_fn(student(x), teacher_out, y)
    loss.backward()
    with torch.no_grad():  # a plain SGD step (torch.optim costs a second to import)
        for p in student.parameters():
            assert p.grad is not None
            p -= 0.1 * p.grad
    metric = task.metric()
    with torch.no_grad():
        metric.update(logits_of(student(x)), y)
    metric.all_reduce()
    return {"parts": parts, "metrics": metric.compute(), "loss": task.loss(student(x), y).item()}


def test_same_loop_for_classification_and_segmentation() -> None:
    torch.manual_seed(0)
    cls = build_task("Classification")
    assert isinstance(cls, ClassificationTask) and cls.primary_metric == "top1"
    student, teacher = nn.Linear(8, 6), nn.Linear(8, 6)
    out = _loop(cls, student, teacher, torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))
    assert set(out["metrics"]) == {"top1", "top5"} and out["loss"] > 0

    seg = build_task("segmentation", num_classes=4, ignore_index=11)
    assert isinstance(seg, SegmentationTask) and seg.primary_metric == "miou"
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[:, 0] = 11
    out = _loop(seg, _Seg(), _Seg(), torch.randn(2, 3, 8, 8), labels)
    assert {"miou", "pixel_acc", "per_class_iou"} <= set(out["metrics"])
    assert set(out["parts"]) == {"kd", "task", "total"}


def test_task_kd_defaults() -> None:
    assert build_task("classification").kd().temperature == 4.0
    seg = build_task("segmentation", num_classes=3)
    kd = seg.kd(temperature=2.0)
    assert kd.temperature == 2.0 and kd.ignore_index == 255
    x = torch.randn(1, 3, 2, 2)
    assert seg.kd_loss({"logits": x}, x).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_names_and_missing_options() -> None:
    with pytest.raises(ValueError, match="unknown task 'detection'.*classification, segmentation"):
        build_task("detection")
    with pytest.raises(ValueError, match="num_classes"):
        build_task("segmentation")
