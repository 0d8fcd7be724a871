"""CamVid (real frames) and the derived scene-patch classification dataset."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cpd.data import (
    CAMVID_IGNORE_INDEX,
    CamVid,
    CamVidPatches,
    build_dataset,
    load_label,
    load_rgb,
)
from cpd.data.image import IMAGENET_MEAN, IMAGENET_STD, normalize

ROOT = Path("/work/shared/data/camvid")
pytestmark = pytest.mark.skipif(not (ROOT / "val.txt").is_file(), reason="CamVid not available")


def test_frames_labels_and_normalisation() -> None:
    data = CamVid(ROOT, "val", max_items=3)
    assert len(data) == 3 and data.augment is None
    assert data.num_classes == 11 and data.ignore_index == CAMVID_IGNORE_INDEX == 11
    image, labels = data[0]
    assert image.shape == (3, 180, 240) and image.dtype == torch.float32
    assert labels.shape == (180, 240) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) <= set(range(12))
    raw_image, raw_label = data.pairs[0]
    assert torch.equal(labels, load_label(raw_label))
    expected = normalize(load_rgb(raw_image).float() / 255, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(image, expected)


def test_training_crop_via_factory() -> None:
    data = build_dataset("camvid", ROOT, "train", crop_size=(64, 96), max_items=2)
    image, labels = data[1]
    assert image.shape == (3, 64, 96) and labels.shape == (64, 96)
    assert set(labels.unique().tolist()) <= set(range(12))


def test_patches_labelled_by_majority_and_deterministic() -> None:
    data = CamVidPatches(ROOT, "val", patch_size=40, max_ignore=0.1, max_frames=2, augment=False)
    again = CamVidPatches(ROOT, "val", patch_size=40, max_ignore=0.1, max_frames=2, augment=False)
    assert len(data) > 10 and torch.equal(data.index, again.index) and torch.equal(data.targets, again.targets)
    pairs = data.frames
    labels = {f: load_label(p) for f, p in enumerate(data.label_files)}
    for i in range(0, len(data), 5):
        frame, top, left = data.index[i].tolist()
        patch = labels[frame][top : top + 40, left : left + 40]
        counts = np.bincount(patch.flatten().numpy(), minlength=12)
        assert counts[11] <= 0.1 * 1600  # too-unlabelled patches were skipped
        assert data.targets[i].item() == counts[:11].argmax()
        image, target = data[i]
        assert image.shape == (3, 40, 40) and target == data.targets[i].item()
        crop = load_rgb(pairs[frame])[:, top : top + 40, left : left + 40].float() / 255
        assert torch.allclose(image, normalize(crop, IMAGENET_MEAN, IMAGENET_STD))


def _fake_root(tmp_path: Path, line: str) -> Path:
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "train" / "a.png")
    Image.fromarray(np.full((4, 6), 3, np.uint8)).save(tmp_path / "trainannot" / "a.png")
    (tmp_path / "train.txt").write_text(line + "\n")
    return tmp_path


def test_original_segnet_absolute_paths_are_resolved(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png")
    image, labels = CamVid(root, "train", augment=False)[0]
    assert image.shape == (3, 4, 6) and bool((labels == 3).all())


def test_layout_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"camvid: root folder .*nowhere does not exist"):
        CamVid(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match=r"expected file .*val\.txt is missing"):
        CamVid(tmp_path, "val")
    root = _fake_root(tmp_path, "train/b.png trainannot/b.png")
    with pytest.raises(FileNotFoundError, match=r"expected file .*train/b\.png is missing"):
        CamVid(root, "train")
    (root / "train.txt").write_text("train/a.png\n")
    with pytest.raises(ValueError, match="line 1 should be 'image label'"):
        CamVid(root, "train")
