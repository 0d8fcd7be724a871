"""Mixed precision: autocast and the fp16 GradScaler, on CUDA only.

On the CPU, autocast to bf16 is slow on most processors and fp16 is unsupported for
many ops, so ``amp`` is ignored there and training runs in fp32. bf16 has fp32's
exponent range and needs no loss scaling; fp16 does (a GradScaler), else small
gradients underflow to zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast", "make_scaler"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def autocast(device: torch.device, amp: str) -> Iterator[None]:
    """Autocast to ``amp`` ("bf16" / "fp16") on CUDA; a no-op for "none" or the CPU."""
    if device.type != "cuda" or amp not in _DTYPES:
        yield
        return
    with torch.autocast("cuda", dtype=_DTYPES[amp]):
        yield


def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 on CUDA (disabled: every method is a pass-through)."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")
