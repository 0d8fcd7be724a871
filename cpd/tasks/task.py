"""A task bundles the loss, the metric and the KD loss, so one training loop serves all.

A training/evaluation loop written against :class:`Task` only ever calls
``task.loss``, ``task.metric()``, ``task.distill_loss(...)`` and reads
``task.primary_metric``; switching between classification and segmentation is then a
matter of ``build_task("classification")`` versus ``build_task("segmentation", ...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from cpd.distill.channel_kd import ChannelKD
from cpd.distill.logit_kd import LogitKD
from cpd.distill.pixel_kd import DenseKD, PixelKD
from cpd.tasks.classification import TopKAccuracy, classification_loss
from cpd.tasks.metric import StreamingMetric
from cpd.tasks.outputs import logits_of
from cpd.tasks.segmentation import ConfusionMatrix, segmentation_loss

if TYPE_CHECKING:
    from cpd.distill.loss import DistillLoss

__all__ = ["Task", "ClassificationTask", "SegmentationTask", "build_task", "TASK_NAMES"]


class Task(ABC):
    """What a training loop needs to know about the prediction problem.

    Attributes:
        name: ``"classification"`` or ``"segmentation"``.
        primary_metric: the key of ``metric().compute()`` used for model selection
            (higher is better).
        temperature: default KD temperature for this task.
    """

    name: str
    primary_metric: str
    temperature: float

    @abstractmethod
    def loss_from_logits(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The supervised loss from raw logits (used inside :class:`DistillLoss`)."""

    @abstractmethod
    def kd(self, temperature: float | None = None) -> nn.Module:
        """The logit KD module, ``kd(student_logits, teacher_logits, targets)``."""

    @abstractmethod
    def metric(self) -> StreamingMetric:
        """A fresh, empty streaming metric."""

    def loss(self, outputs: Any, targets: Tensor) -> Tensor:
        """The supervised loss from a model's outputs (any form :func:`logits_of` accepts)."""
        return self.loss_from_logits(logits_of(outputs), targets)

    def kd_loss(self, student_outputs: Any, teacher_outputs: Any, targets: Tensor | None = None) -> Tensor:
        """The logit KD loss alone, at this task's default temperature."""
        return self.kd()(logits_of(student_outputs), logits_of(teacher_outputs), targets)

    def distill_loss(
        self, alpha: float = 0.5, temperature: float | None = None, feature_weight: float = 0.0
    ) -> DistillLoss:
        """A :class:`~cpd.distill.DistillLoss` mixing this task's KD and supervised loss.

        Args:
            alpha: weight of the KD term (``1 - alpha`` for the task loss).
            temperature: KD temperature; ``None`` for the task's default.
            feature_weight: weight of optional feature distillation terms.
        """
        # Imported here: cpd.distill.loss imports cpd.tasks, so a top-level import would
        # make the two packages' import order matter.
        from cpd.distill.loss import DistillLoss  # noqa: F811

        return DistillLoss(self.kd(temperature), self.loss_from_logits, alpha, feature_weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(primary_metric={self.primary_metric!r})"


class ClassificationTask(Task):
    """Cross-entropy, top-1/top-5 accuracy and Hinton logit KD.

    Args:
        topk: accuracies to report (the first is the primary metric).
        temperature: default KD temperature.
        label_smoothing: for the cross-entropy.
    """

    name = "classification"

    def __init__(
        self, topk: Sequence[int] = (1, 5), temperature: float = 4.0, label_smoothing: float = 0.0
    ) -> None:
        self.topk = tuple(topk)
        self.primary_metric = f"top{self.topk[0]}"
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)

    def loss_from_logits(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits``: ``(B, C)``; ``targets``: ``(B,)``."""
        return classification_loss(logits, targets, self.label_smoothing)

    def kd(self, temperature: float | None = None) -> nn.Module:
        return LogitKD(self.temperature if temperature is None else temperature)

    def metric(self) -> TopKAccuracy:
        return TopKAccuracy(self.topk)


#: segmentation KD losses by ``kd_mode`` (each class carries its default temperature)
SEGMENTATION_KD: dict[str, type[DenseKD]] = {"pixel": PixelKD, "channel": ChannelKD}


class SegmentationTask(Task):
    """Per-pixel cross-entropy, mIoU and per-pixel KD, all with an ignore label.

    Args:
        num_classes: number of classes ``C`` (needed by the confusion matrix).
        ignore_index: label of pixels to leave out of loss, KD and metric.
        temperature: default KD temperature; ``None``: 1 for ``"pixel"``, 4 for
            ``"channel"`` (the values their papers use on logits).
        label_smoothing: for the cross-entropy.
        kd_mode: ``"pixel"``: per-pixel KD over classes (:class:`~cpd.distill.PixelKD`);
            ``"channel"``: channel-wise KD over pixels (:class:`~cpd.distill.ChannelKD`).
    """

    name = "segmentation"
    primary_metric = "miou"

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        temperature: float | None = None,
        label_smoothing: float = 0.0,
        kd_mode: str = "pixel",
    ) -> None:
        if kd_mode not in SEGMENTATION_KD:
            raise ValueError(f"kd_mode must be one of {', '.join(SEGMENTATION_KD)}, got {kd_mode!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.kd_mode = kd_mode
        kd_class = SEGMENTATION_KD[kd_mode]
        self.temperature = float(kd_class.default_temperature if temperature is None else temperature)
        self.label_smoothing = float(label_smoothing)

    def loss_from_logits(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits``: ``(B, C, h, w)`` (resized to the labels); ``targets``: ``(B, H, W)``."""
        return segmentation_loss(logits, targets, self.ignore_index, self.label_smoothing)

    def kd(self, temperature: float | None = None) -> nn.Module:
        return SEGMENTATION_KD[self.kd_mode](self.temperature if temperature is None else temperature,
                                             self.ignore_index)

    def metric(self) -> ConfusionMatrix:
        return ConfusionMatrix(self.num_classes, self.ignore_index)


TASK_NAMES = ("classification", "segmentation")


def build_task(name: str, **options: Any) -> Task:
    """Build a task by name.

    Args:
        name: ``"classification"`` or ``"segmentation"``.
        **options: passed to :class:`ClassificationTask` or :class:`SegmentationTask`
            (segmentation needs ``num_classes``).

    Raises:
        ValueError: for an unknown name or a segmentation task without ``num_classes``.
    """
    key = name.strip().lower()
    if key == "classification":
        return ClassificationTask(**options)
    if key == "segmentation":
        if "num_classes" not in options:
            raise ValueError(
                "the segmentation task needs num_classes, e.g. "
                "build_task('segmentation', num_classes=11, ignore_index=11)"
            )
        return SegmentationTask(**options)
    raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}")
