"""Distill: losses that train the pruned student to mimic the unpruned teacher."""

from cpd.distill.feature_kd import feature_kd_loss
from cpd.distill.logit_kd import LogitKD, kl_per_sample, logit_kd_loss
from cpd.distill.loss import DistillLoss, FeaturePair, KDFn, TaskLossFn
from cpd.distill.mix import mix_losses
from cpd.distill.pixel_kd import PixelKD, pixel_kd_loss

__all__ = [
    "DistillLoss",
    "FeaturePair",
    "KDFn",
    "LogitKD",
    "PixelKD",
    "TaskLossFn",
    "feature_kd_loss",
    "kl_per_sample",
    "logit_kd_loss",
    "mix_losses",
    "pixel_kd_loss",
]
