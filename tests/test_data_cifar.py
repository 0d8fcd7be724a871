"""CIFAR pickle batches on fake files, and the restricted unpickler."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cpd.data import CIFAR10, CIFAR100, build_dataset, load_cifar_batch


def _batch(path: Path, n: int, offset: int, label_key: str, numpy1: bool = False) -> None:
    data = (np.arange(n * 3072) % 251 + offset).astype(np.uint8).reshape(n, 3072)
    payload = pickle.dumps({"batch_label": "x", "data": data, label_key: list(range(offset, offset + n))}, protocol=2)
    if numpy1:  # what the official files (pickled with numpy 1) reference
        payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(payload)


def _cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _batch(folder / f"data_batch_{i}", 2, i, "labels", numpy1=i == 1)
    _batch(folder / "test_batch", 3, 0, "labels")
    return root


def test_cifar10_layout_and_values(tmp_path: Path) -> None:
    root = _cifar10(tmp_path)
    train = build_dataset("cifar10", root, "train", augment=False)
    assert len(train) == 10 and train.num_classes == 10
    assert train.targets.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    image, label = train[0]
    assert image.shape == (3, 32, 32) and label == 1
    raw = torch.from_numpy((np.arange(3072) % 251 + 1).astype(np.uint8).reshape(3, 32, 32)).float() / 255
    assert torch.allclose(image[0], (raw[0] - 0.4914) / 0.2470)
    test = CIFAR10(root / "cifar-10-batches-py", "val")  # the folder itself works too
    assert len(test) == 3 and test.augment is None
    assert CIFAR10(root, "train").augment is not None
    assert CIFAR10(root, "train")[0][0].shape == (3, 32, 32)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _batch(folder / "train", 4, 10, "fine_labels")
    _batch(folder / "test", 2, 50, "fine_labels")
    data = CIFAR100(tmp_path, "test")
    assert data.num_classes == 100 and data.targets.tolist() == [50, 51]


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_cifar_batch(path)
    assert not (tmp_path / "pwned").exists()


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected file .*data_batch_1 is missing"):
        CIFAR10(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="cifar100: root folder .* does not exist"):
        CIFAR100(tmp_path / "missing", "train")
    with pytest.raises(ValueError, match="unknown split"):
        CIFAR10(tmp_path, "extra")
