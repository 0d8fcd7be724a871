"""Random-number-generator states as plain tensors, for exact resume.

A resumed run reproduces an uninterrupted one only if every generator that the loop
touches (dropout and augmentation draw from torch's; user code may use python's or
numpy's) is back where it was. The states are stored as tensors, ints and floats so
that the checkpoint loads with ``torch.load(weights_only=True)``: no pickled objects.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "get_rng_state", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_rng_state() -> dict[str, Any]:
    """Snapshot of all generators as ``{name: tensors / ints / floats}``.

    Returns:
        ``python``: ``{"version": int, "state": int64 (625,), "gauss": float | None}``;
        ``numpy``: ``{"keys": int64 (624,), "pos": int, "has_gauss": int, "gauss": float}``;
        ``torch``: uint8 ``(S,)``; ``cuda``: a list of uint8 tensors, one per device
        (empty without CUDA).
    """
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
    return {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot from :func:`get_rng_state`.

    CUDA states are restored only when the number of devices matches (a checkpoint
    moved to another machine still resumes, just not bit-exactly on the GPU side).
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
