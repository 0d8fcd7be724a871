"""CamVid road scenes in the SegNet layout (11 classes, label 11 = unlabelled)."""

from __future__ import annotations

from pathlib import Path

from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.layout import require_file, require_root, split_alias
from cpd.data.paired import PairedSegmentation

__all__ = ["CamVid", "CAMVID_CLASSES", "CAMVID_IGNORE_INDEX", "camvid_pairs"]

CAMVID_CLASSES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_IGNORE_INDEX = 11

LAYOUT = "SegNet CamVid: {split}.txt listing 'image label' paths, with {split}/*.png and {split}annot/*.png"
_SPLITS = {"train": "train", "val": "val", "test": "test"}


def _resolve(root: Path, listed: str) -> Path:
    path = Path(listed)
    if not path.is_absolute():
        return root / path
    # The original SegNet lists hold absolute paths like /SegNet/CamVid/train/x.png;
    # keep the last two parts (folder/file) relative to the actual root.
    return path if path.exists() else root / path.parent.name / path.name


def camvid_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """The ``(image, label)`` paths listed in ``root/{split}.txt``, all checked to exist.

    Raises:
        FileNotFoundError: naming the missing root, list file or first missing image.
        ValueError: for an unknown split or a malformed list line.
    """
    split = split_alias(split, "camvid", _SPLITS)
    base = require_root(root, "camvid", LAYOUT)
    listing = require_file(base / f"{split}.txt", "camvid", LAYOUT)
    pairs: list[tuple[Path, Path]] = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"camvid: {listing} line {number} should be 'image label', got {line!r}")
        image, label = _resolve(base, fields[0]), _resolve(base, fields[1])
        require_file(image, "camvid", LAYOUT)
        require_file(label, "camvid", LAYOUT)
        pairs.append((image, label))
    if not pairs:
        raise FileNotFoundError(f"camvid: {listing} lists no images; expected lines 'train/x.png trainannot/x.png'")
    return pairs


class CamVid(PairedSegmentation):
    """CamVid frames as ``(image (3, H, W), labels (H, W))``, 11 classes, ignore 11.

    Args:
        root: folder with ``{split}.txt``, ``{split}/`` and ``{split}annot/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        augment: ``None`` = random resized crop + flip for ``train`` only; ``True``/``False``
            or a :class:`JointAugment` to choose.
        crop_size: output ``(H, W)`` of the training crop; ``None`` keeps the frame size.
        scale: crop area range for the training augmentation.
        max_items: keep only the first ``max_items`` frames (quick runs, tests).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        augment: bool | JointAugment | None = None,
        crop_size: int | tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.5, 1.0),
        max_items: int | None = None,
    ) -> None:
        pairs = camvid_pairs(root, split)
        if max_items is not None:
            pairs = pairs[:max_items]
        super().__init__(
            pairs,
            num_classes=len(CAMVID_CLASSES),
            ignore_index=CAMVID_IGNORE_INDEX,
            augment=resolve_augment(augment, split, lambda: JointAugment(crop_size, scale)),
        )
        self.classes = CAMVID_CLASSES
