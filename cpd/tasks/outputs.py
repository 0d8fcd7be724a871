"""Find the logits tensor inside whatever a vision model's ``forward`` returned.

Models in the wild return a bare tensor (most CNNs), a dict (``{"out": ..., "aux": ...}``
for DeepLab-style heads), a tuple (auxiliary classifiers, ``(logits, features)``) or a
Hugging Face ``ModelOutput``. The training loop, the metrics and the distillation losses
all go through :func:`logits_of` so that none of them has to care which one it got.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["logits_of"]

# Deep enough for ``((logits, aux), features)``; a deeper nest is almost certainly not logits.
_MAX_DEPTH = 4


def logits_of(outputs: Any) -> Tensor:
    """Return the logits tensor from a model's outputs.

    Resolution order:

    1. a :class:`torch.Tensor` is returned as is;
    2. an object with a tensor ``.logits`` attribute (Hugging Face ``ModelOutput``);
    3. a mapping: its ``"logits"`` entry, else its first tensor value (so ``{"out": x}`` works);
    4. a tuple or list: its first element (searched recursively).

    Args:
        outputs: whatever ``model(x)`` returned.

    Returns:
        The logits, e.g. ``(B, C)`` for classification or ``(B, C, h, w)`` for segmentation.

    Raises:
        TypeError: if no tensor can be found; the message names the type that was given.
    """
    found = _search(outputs, depth=0)
    if found is None:
        raise TypeError(
            f"cannot find logits in model outputs of type {type(outputs).__name__}: expected a "
            "Tensor, a dict with 'logits' (or a tensor value), a tuple/list whose first element "
            "is the logits, or an object with a .logits attribute"
        )
    return found


def _search(outputs: Any, depth: int) -> Tensor | None:
    if depth > _MAX_DEPTH:
        return None
    if isinstance(outputs, Tensor):
        return outputs
    # Checked before Mapping: a ModelOutput is an OrderedDict whose first value may be the loss.
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(outputs, Mapping):
        value = outputs.get("logits")
        if isinstance(value, Tensor):
            return value
        for value in outputs.values():
            if isinstance(value, Tensor):
                return value
        return None
    if isinstance(outputs, (tuple, list)) and len(outputs) > 0:
        return _search(outputs[0], depth + 1)
    return None
