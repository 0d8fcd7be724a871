"""Joint augmentation keeps image and mask aligned; eval applies none."""

import pytest
import torch

from cpd.data import JointAugment, resolve_augment


def _blocks(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A binary mask of 8x8 blocks (48x64) and an image whose channels equal the mask."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 2, (6, 8), generator=g).repeat_interleave(8, 0).repeat_interleave(8, 1)
    return mask.float()[None].repeat(3, 1, 1), mask


def test_flip_moves_image_and_mask_together() -> None:
    image, mask = _blocks()
    aug = JointAugment(size=None, scale=(1.0, 1.0))  # full-frame crop: only the flip acts
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = aug(image, mask)
        assert out_mask is not None and out_mask.dtype == torch.long
        assert torch.equal(out_image[0], out_mask.float())  # still the same function of the image
        assert torch.equal(out_mask, mask) or torch.equal(out_mask, mask.flip(-1))
        flipped += int(torch.equal(out_mask, mask.flip(-1)))
    assert 0 < flipped < 8


@pytest.mark.parametrize("size", [(24, 32), (96, 128), (30, 30)])
def test_resized_crop_keeps_alignment(size: tuple[int, int]) -> None:
    # Bilinear image at 0.5 and nearest mask switch at the same place; a misaligned grid
    # (e.g. align_corners mismatch) shifts every edge by up to a pixel and fails this.
    image, mask = _blocks(1)
    aug = JointAugment(size=size, scale=(0.3, 1.0))
    for seed in range(3):
        torch.manual_seed(seed)
        out_image, out_mask = aug(image, mask)
        assert out_image.shape == (3, *size) and out_mask is not None and out_mask.shape == size
        assert set(out_mask.unique().tolist()) <= {0, 1}  # nearest: no blended labels
        agree = ((out_image[0] > 0.5).long() == out_mask).float().mean().item()
        assert agree > 0.99


def test_batches_and_images_without_mask() -> None:
    image, mask = _blocks()
    aug = JointAugment(size=16)
    out_image, out_mask = aug(image[None].repeat(4, 1, 1, 1), mask[None].repeat(4, 1, 1))
    assert out_image.shape == (4, 3, 16, 16) and out_mask is not None and out_mask.shape == (4, 16, 16)
    single, none = aug(image)
    assert single.shape == (3, 16, 16) and none is None


def test_resolve_augment_by_split() -> None:
    made = lambda: JointAugment(8)  # noqa: E731
    assert isinstance(resolve_augment(None, "train", made), JointAugment)
    assert resolve_augment(None, "val", made) is None
    assert resolve_augment(False, "train", made) is None
    assert isinstance(resolve_augment(True, "test", made), JointAugment)
