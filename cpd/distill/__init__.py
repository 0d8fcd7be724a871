"""Distill: losses that train the pruned student to mimic the unpruned teacher."""

from cpd.distill.channel_kd import ChannelKD, channel_kd_loss
from cpd.distill.feature_axes import (
    FeatureAxis,
    feature_axis,
    kept_channels,
    register_feature_axis,
)
from cpd.distill.feature_kd import feature_kd_loss, mean_feature_kd
from cpd.distill.feature_taps import FeatureTaps, check_feature_layers, first_tensor
from cpd.distill.logit_kd import LogitKD, kl_per_sample, logit_kd_loss
from cpd.distill.loss import DistillLoss, FeaturePair, KDFn, TaskLossFn
from cpd.distill.mix import mix_losses
from cpd.distill.pixel_kd import DenseKD, PixelKD, pixel_kd_loss
from cpd.distill.views import EXTRA_VIEWS, CutMixBox, cutmix_box, cutmix_view, make_view

__all__ = [
    "ChannelKD",
    "CutMixBox",
    "DenseKD",
    "DistillLoss",
    "EXTRA_VIEWS",
    "FeatureAxis",
    "FeaturePair",
    "FeatureTaps",
    "KDFn",
    "LogitKD",
    "PixelKD",
    "TaskLossFn",
    "channel_kd_loss",
    "check_feature_layers",
    "cutmix_box",
    "cutmix_view",
    "feature_axis",
    "feature_kd_loss",
    "first_tensor",
    "kept_channels",
    "kl_per_sample",
    "logit_kd_loss",
    "make_view",
    "mean_feature_kd",
    "mix_losses",
    "pixel_kd_loss",
    "register_feature_axis",
]
