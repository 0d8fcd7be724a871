"""Datasets in their standard on-disk layouts, and joint image/mask augmentation."""

from cpd.data.ade20k import ADE20K, ADE20K_IGNORE_INDEX, ade20k_label_map
from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.camvid import CAMVID_CLASSES, CAMVID_IGNORE_INDEX, CamVid, camvid_pairs
from cpd.data.camvid_patches import CamVidPatches
from cpd.data.cifar import CIFAR10, CIFAR100, load_cifar_batch
from cpd.data.digits import Digits
from cpd.data.factory import DATASETS, build_dataset
from cpd.data.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_label,
    load_rgb,
    normalize,
    to_float,
)
from cpd.data.imagefolder import ImageFolder, center_crop_resize
from cpd.data.paired import PairedSegmentation

__all__ = [
    "ADE20K",
    "ADE20K_IGNORE_INDEX",
    "CAMVID_CLASSES",
    "CAMVID_IGNORE_INDEX",
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CamVid",
    "CamVidPatches",
    "Digits",
    "ImageFolder",
    "JointAugment",
    "PairedSegmentation",
    "ade20k_label_map",
    "build_dataset",
    "camvid_pairs",
    "center_crop_resize",
    "load_cifar_batch",
    "load_label",
    "load_rgb",
    "normalize",
    "resolve_augment",
    "to_float",
]
