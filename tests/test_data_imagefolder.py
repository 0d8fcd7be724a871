"""ImageNet-style folders on a tiny fake layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cpd.data import ImageFolder, build_dataset, center_crop_resize


def _make(root: Path) -> Path:
    for split in ("train", "val"):
        for name, value in (("cat", 40), ("dog", 200)):
            folder = root / split / name
            folder.mkdir(parents=True)
            Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(folder / "a.png")
            Image.fromarray(np.full((24, 24, 3), value, np.uint8)).save(folder / "b.jpg")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_classes_samples_and_eval_transform(tmp_path: Path) -> None:
    data = build_dataset("imagefolder", _make(tmp_path), "val", size=16)
    assert data.classes == ["cat", "dog"] and data.num_classes == 2 and len(data) == 4
    assert data.augment is None
    image, label = data[2]
    assert image.shape == (3, 16, 16) and label == 1
    # Constant images stay constant: (200 / 255 - mean) / std in channel 0.
    assert image[0].mean().item() == pytest.approx((200 / 255 - 0.485) / 0.229, abs=0.05)


def test_train_split_is_augmented_and_split_none(tmp_path: Path) -> None:
    root = _make(tmp_path)
    train = ImageFolder(root, "train", size=12)
    assert train.augment is not None and len(train) == 4  # notes.txt is not an image
    assert train[0][0].shape == (3, 12, 12)
    flat = ImageFolder(root / "val", None, size=8)
    assert len(flat) == 4 and flat[0][0].shape == (3, 8, 8)


def test_center_crop_resize_geometry() -> None:
    image = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 40, 60).repeat(3, 1, 1)
    out = center_crop_resize(image, 28, crop_fraction=0.875)  # short side 32, then crop 28
    assert out.shape == (3, 28, 28)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected folder .*train is missing"):
        ImageFolder(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path, "train")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(tmp_path, "train")
