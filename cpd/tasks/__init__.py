"""Tasks: what is predicted, how it is scored, and how its logits are distilled."""

# outputs first: cpd.distill imports cpd.tasks.outputs while cpd.tasks may be half-loaded.
from cpd.tasks.outputs import logits_of  # isort: skip
from cpd.tasks.classification import TopKAccuracy, classification_loss
from cpd.tasks.metric import StreamingMetric, all_reduce_sum
from cpd.tasks.segmentation import ConfusionMatrix, resize_logits, segmentation_loss
from cpd.tasks.task import (
    TASK_NAMES,
    ClassificationTask,
    SegmentationTask,
    Task,
    build_task,
)

__all__ = [
    "TASK_NAMES",
    "ClassificationTask",
    "ConfusionMatrix",
    "SegmentationTask",
    "StreamingMetric",
    "Task",
    "TopKAccuracy",
    "all_reduce_sum",
    "build_task",
    "classification_loss",
    "logits_of",
    "resize_logits",
    "segmentation_loss",
]
