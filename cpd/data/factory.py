"""``build_dataset(name, root, split, **opts)``: every dataset behind one call."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cpd.data.ade20k import ADE20K
from cpd.data.camvid import CamVid
from cpd.data.camvid_patches import CamVidPatches
from cpd.data.cifar import CIFAR10, CIFAR100
from cpd.data.digits import Digits
from cpd.data.imagefolder import ImageFolder

__all__ = ["DATASETS", "build_dataset"]

#: name -> dataset class; every class takes ``(root, split, **options)`` except digits,
#: which has no root.
DATASETS: dict[str, Callable[..., Dataset[Any]]] = {
    "digits": Digits,
    "camvid": CamVid,
    "camvid_patches": CamVidPatches,
    "imagefolder": ImageFolder,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "ade20k": ADE20K,
}


def build_dataset(name: str, root: str | Path | None = None, split: str = "train", **opts: Any) -> Dataset[Any]:
    """Build a dataset by name.

    Every dataset returns ``(image, target)`` with ``image`` a normalised float
    ``(3, H, W)`` tensor (digits: ``(channels, size, size)``) and ``target`` an ``int``
    (classification) or an int64 ``(H, W)`` label map (segmentation). Each dataset also
    exposes ``num_classes`` and ``task`` (``"classification"``/``"segmentation"``), and
    segmentation datasets ``ignore_index``.

    Args:
        name: one of :data:`DATASETS` (case-insensitive; ``-`` and ``_`` are the same).
        root: the dataset folder in its standard layout (ignored by ``digits``).
        split: ``"train"``, ``"val"`` or ``"test"`` (see each class for aliases).
        **opts: options of the dataset class, e.g. ``size=32`` for digits or
            ``crop_size=(176, 240)`` for CamVid.

    Raises:
        ValueError: unknown dataset name or option, or a malformed file.
        FileNotFoundError: missing root, or a root without the expected files/folders
            (the message names the one expected).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    cls = DATASETS[key]
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("root", "split")]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise ValueError(
            f"dataset {key!r} does not take option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    if key == "digits":
        return cls(split=split, **opts)
    return cls(root, split=split, **opts)
