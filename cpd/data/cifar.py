"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

The batches are pickles, and a plain ``pickle.load`` runs whatever a tampered file
asks for. :class:`_CifarUnpickler` only resolves the few numpy globals needed to rebuild
an array (plus ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for
bytes), so a malicious file fails with ``UnpicklingError`` instead of executing code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cpd.data.augment import JointAugment, resolve_augment
from cpd.data.image import normalize, to_float
from cpd.data.layout import require_file, require_root, split_alias

__all__ = ["CIFAR", "CIFAR10", "CIFAR100", "load_cifar_batch"]

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
# numpy 2 renamed numpy.core to numpy._core and warns when the old name is imported;
# the official batches (pickled with numpy 1) name the old one.
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith(("numpy.core.", "numpy._core.")):
                module = _NUMPY_CORE + module[module.index(".", 6) :]
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} from a CIFAR batch; the file is not a "
            "genuine CIFAR pickle (only numpy arrays, lists and dicts are expected)"
        )


def load_cifar_batch(path: str | Path) -> dict[str, Any]:
    """Safely unpickle one CIFAR batch file into a dict with ``str`` keys.

    Raises:
        pickle.UnpicklingError: if the file references anything but numpy array globals.
    """
    with open(path, "rb") as f:
        # latin1: the official files were pickled by Python 2; numpy needs latin1 to
        # rebuild arrays from Python 2 str payloads.
        raw = _CifarUnpickler(f, encoding="latin1").load()
    if not isinstance(raw, dict):
        raise pickle.UnpicklingError(f"{path} does not hold a dict; not a CIFAR batch file")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


class CIFAR(Dataset[tuple[Tensor, int]]):
    """CIFAR images held in memory as uint8, returned as ``(image (3, 32, 32), label)``.

    Use :class:`CIFAR10` or :class:`CIFAR100`.

    Args:
        root: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or
            the folder that contains it.
        split: ``"train"`` or ``"test"`` (``"val"`` is the same as ``"test"``: CIFAR has
            no separate validation set).
        augment: ``None`` = random resized crop (scale 0.6-1) + flip for ``train`` only.
    """

    name: str
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    task = "classification"

    def __init__(self, root: str | Path, split: str = "train", augment: bool | JointAugment | None = None) -> None:
        which = split_alias(split, self.name, {"train": "train", "val": "test", "test": "test"})
        layout = f"{self.folder}/{{{','.join(f for fs in self.files.values() for f in fs)}}}"
        base = require_root(root, self.name, layout)
        if (base / self.folder).is_dir():
            base = base / self.folder
        data: list[np.ndarray] = []
        labels: list[int] = []
        for name in self.files[which]:
            batch = load_cifar_batch(require_file(base / name, self.name, layout))
            if "data" not in batch or self.label_key not in batch:
                raise ValueError(f"{self.name}: {base / name} lacks 'data' or '{self.label_key}'; not a {self.name} batch")
            data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in batch[self.label_key])
        self.images = torch.from_numpy(np.concatenate(data))  # (N, 3, 32, 32) uint8
        self.targets = torch.tensor(labels, dtype=torch.long)
        if len(self.images) != len(self.targets):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.targets)} labels in {base}")
        self.augment = resolve_augment(augment, split, lambda: JointAugment(32, (0.6, 1.0), ratio=(3 / 4, 4 / 3)))

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = to_float(self.images[index])
        if self.augment is not None:
            image, _ = self.augment(image)
        return normalize(image, self.mean, self.std), int(self.targets[index])


class CIFAR10(CIFAR):
    """CIFAR-10: ``data_batch_1``..``data_batch_5`` (train) and ``test_batch``; 10 classes."""

    name = "cifar10"
    folder = "cifar-10-batches-py"
    files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    label_key = "labels"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100(CIFAR):
    """CIFAR-100: ``train`` and ``test`` files; 100 fine classes."""

    name = "cifar100"
    folder = "cifar-100-python"
    files = {"train": ("train",), "test": ("test",)}
    label_key = "fine_labels"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
