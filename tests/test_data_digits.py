"""scikit-learn digits: shapes, normalisation, deterministic stratified split."""

import numpy as np
import pytest
import torch

from cpd.data import Digits, build_dataset


def test_native_grey_and_upsampled_rgb() -> None:
    grey = Digits("train")
    image, label = grey[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and isinstance(label, int)
    rgb = Digits("train", size=32, channels=3)
    image, _ = rgb[0]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])
    assert abs(rgb.images.mean().item()) < 0.05  # normalised


def test_split_deterministic_disjoint_stratified() -> None:
    train, val = Digits("train", seed=3), Digits("val", seed=3)
    assert len(train) + len(val) == 1797 and len(val) == pytest.approx(0.2 * 1797, abs=10)
    assert torch.equal(Digits("val", seed=3).images, val.images)
    assert not torch.equal(Digits("val", seed=4).images, val.images)
    # Disjoint: no val image appears in train.
    train_rows = {row.tobytes() for row in train.images.flatten(1).numpy()}
    overlap = sum(row.tobytes() in train_rows for row in val.images.flatten(1).numpy())
    assert overlap <= 5  # the raw data has a few exact duplicate images
    counts = np.bincount(val.targets.numpy(), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_factory_and_errors() -> None:
    data = build_dataset("digits", split="test", size=16, channels=3)
    assert data[0][0].shape == (3, 16, 16) and data.num_classes == 10
    with pytest.raises(ValueError, match="channels"):
        Digits(channels=2)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        Digits("holdout")
