"""build_dataset: names, options and one-line errors for bad roots."""

from pathlib import Path

import pytest

from cpd.data import DATASETS, build_dataset


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; choose one of: digits, camvid"):
        build_dataset("mnist", "/tmp")


def test_name_normalisation_and_unknown_option() -> None:
    assert build_dataset("Digits", split="val").num_classes == 10
    with pytest.raises(ValueError, match="does not take option.*colour.*accepts: size"):
        build_dataset("digits", colour=True)
    assert "camvid_patches" in DATASETS


@pytest.mark.parametrize("name", ["camvid", "camvid-patches", "imagefolder", "cifar10", "cifar100", "ade20k"])
def test_missing_or_empty_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no root folder given"):
        build_dataset(name, None)
    with pytest.raises(FileNotFoundError, match="does not exist; pass the folder laid out as"):
        build_dataset(name, tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="expected (file|folder) .* is missing") as info:
        build_dataset(name, tmp_path)
    assert "\n" not in str(info.value)
