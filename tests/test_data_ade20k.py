"""ADE20K on a tiny fake ADEChallengeData2016 layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cpd.data import ADE20K, build_dataset


def _make(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for folder in ("training", "validation"):
        (base / "images" / folder).mkdir(parents=True)
        (base / "annotations" / folder).mkdir(parents=True)
        for name, shape in (("ADE_0001", (12, 16)), ("ADE_0002", (20, 10))):
            Image.fromarray(np.full((*shape, 3), 128, np.uint8)).save(base / "images" / folder / f"{name}.jpg")
            raw = np.zeros(shape, np.uint8)
            raw[0, 0], raw[0, 1], raw[0, 2] = 1, 150, 37
            Image.fromarray(raw).save(base / "annotations" / folder / f"{name}.png")
    return root


def test_labels_shifted_and_other_ignored(tmp_path: Path) -> None:
    data = build_dataset("ade20k", _make(tmp_path), "val")
    assert len(data) == 2 and data.num_classes == 150 and data.ignore_index == 255
    image, labels = data[0]
    assert image.shape == (3, 12, 16) and labels.shape == (12, 16) and labels.dtype == torch.long
    assert labels[0, :3].tolist() == [0, 149, 36]
    assert bool((labels[1:] == 255).all())  # raw 0 ("other") -> ignore


def test_training_crop_and_inner_root(tmp_path: Path) -> None:
    root = _make(tmp_path) / "ADEChallengeData2016"
    train = ADE20K(root, "train", crop_size=8, max_items=1)
    image, labels = train[0]
    assert image.shape == (3, 8, 8) and labels.shape == (8, 8)
    assert set(labels.unique().tolist()) <= {0, 36, 149, 255}


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected folder .*images/training is missing"):
        ADE20K(tmp_path, "train")
    _make(tmp_path)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_0002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotation .*ADE_0002\.png for image ADE_0002\.jpg is missing"):
        ADE20K(tmp_path, "val")
