"""Confusion-matrix mIoU against a hand case; resizing; ignore; the task loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from cpd.tasks import ConfusionMatrix, resize_logits, segmentation_loss

LABELS = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
PREDS = torch.tensor([[[0, 1, 1], [1, 1, 2]]])  # the 2 at the ignored pixel must not count


def _logits(preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(preds, num_classes).permute(0, 3, 1, 2).float()


def test_hand_computed_confusion_matrix() -> None:
    # gt0 -> pred (0, 1); gt1 -> (1, 1); gt2 -> (1): IoU = 1/2, 2/4, 0/1.
    metric = ConfusionMatrix(num_classes=4, ignore_index=255)
    metric.update(_logits(PREDS, 4), LABELS)
    assert metric.matrix[:3, :3].tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    out = metric.compute()
    assert out["per_class_iou"][:3] == pytest.approx([50.0, 50.0, 0.0])
    assert math.isnan(out["per_class_iou"][3])  # never labelled nor predicted: left out
    assert out["miou"] == pytest.approx(100 / 3)
    assert out["pixel_acc"] == pytest.approx(60.0)


def test_integer_predictions_and_ignore_index_inside_range() -> None:
    metric = ConfusionMatrix(num_classes=3, ignore_index=2)
    metric.update(PREDS, LABELS)  # label 2 is ignored too now, as is 255 (out of range)
    assert int(metric.matrix.sum()) == 4


def test_low_resolution_logits_are_upsampled() -> None:
    low = torch.zeros(1, 3, 1, 1)
    low[0, 1] = 1.0  # predicts class 1 everywhere after upsampling
    metric = ConfusionMatrix(3)
    metric.update(low, LABELS)
    assert metric.matrix[:, 1].tolist() == [2, 2, 1]
    assert resize_logits(torch.randn(2, 3, 4, 5), (8, 10)).shape == (2, 3, 8, 10)


def test_streaming_equals_one_shot() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 4, 4)
    labels = torch.randint(0, 6, (6, 8, 8))
    labels[labels == 5] = 255
    whole, stream = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(logits, labels)
    for i in range(0, 6, 2):
        stream.update(logits[i : i + 2], labels[i : i + 2])
    assert torch.equal(whole.matrix, stream.matrix)
    assert whole.compute()["miou"] == stream.compute()["miou"]


def test_loss_ignores_pixels_and_resizes() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 3, requires_grad=True)
    labels = LABELS.clone()
    expected = F.cross_entropy(logits[:, :, :, :].detach(), labels, ignore_index=255)
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected.item())
    low = torch.randn(1, 3, 1, 1).expand(1, 3, 2, 3)
    assert segmentation_loss(low[..., :1, :1], labels).item() == pytest.approx(
        segmentation_loss(low, labels).item()
    )
    all_ignored = segmentation_loss(logits, torch.full_like(labels, 255))
    assert all_ignored.item() == 0.0
    all_ignored.backward()


def test_channel_mismatch_error() -> None:
    with pytest.raises(ValueError, match="channels"):
        ConfusionMatrix(4).update(torch.zeros(1, 3, 2, 3), LABELS)
