"""The example input of a model: its shape and how it is passed to ``forward``.

A source knows the image size its model expects (a Hugging Face config's
``image_size``, timm's ``pretrained_cfg``); a saved folder records it so that a
loaded model can be counted, benchmarked and exported without the user repeating
the shape. Two forms exist:

* ``"tensor"``: ``model(x)``;
* ``"kwarg"``: ``model(**{name: x})``, ``name`` usually ``"pixel_values"``
  (Hugging Face vision models).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cpd.io.errors import CpdInputError

__all__ = ["DEFAULT_SHAPE", "InputSpec", "infer_kwarg"]

#: Used when a source knows nothing about the input (torchvision, ``py:``).
DEFAULT_SHAPE: tuple[int, ...] = (1, 3, 224, 224)
#: Example inputs are reproducible: the same seed everywhere.
SEED = 0


@dataclass(frozen=True)
class InputSpec:
    """Shape and form of one example input.

    Attributes:
        shape: e.g. ``(1, 3, 224, 224)``; dim 0 is the batch.
        kwarg: keyword the tensor is passed as (``"pixel_values"``), or ``None``
            to pass it positionally.
    """

    shape: tuple[int, ...] = DEFAULT_SHAPE
    kwarg: str | None = None

    @property
    def form(self) -> str:
        """``"tensor"`` or ``"kwarg"``."""
        return "tensor" if self.kwarg is None else "kwarg"

    def with_shape(self, shape: tuple[int, ...] | None) -> InputSpec:
        """The same form with another shape (``None`` keeps this one)."""
        return self if shape is None else InputSpec(tuple(shape), self.kwarg)

    def make(self, seed: int = SEED) -> torch.Tensor | dict[str, torch.Tensor]:
        """A float32 standard-normal tensor of ``shape``, bare or as ``{kwarg: x}``."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*self.shape, generator=g)
        return x if self.kwarg is None else {self.kwarg: x}

    def wrap(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Put a batch ``x`` into this form (for data loaders)."""
        return x if self.kwarg is None else {self.kwarg: x}

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"shape": list(self.shape), "form": self.form}
        if self.kwarg is not None:
            d["name"] = self.kwarg
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> InputSpec:
        try:
            shape = tuple(int(s) for s in d["shape"])
            form = d.get("form", "tensor")
            if form not in ("tensor", "kwarg") or not shape:
                raise ValueError(form)
            return InputSpec(shape, str(d["name"]) if form == "kwarg" else None)
        except (KeyError, TypeError, ValueError) as e:
            raise CpdInputError(f"bad input description {d!r}: expected "
                                '{"shape": [1, 3, 224, 224], "form": "tensor"|"kwarg", "name": ...}') from e


def infer_kwarg(model: nn.Module) -> str | None:
    """``"pixel_values"`` when ``model.forward`` has such a parameter, else ``None``.

    Hugging Face vision models name their image input ``pixel_values`` and accept
    it positionally too, but their other positional parameters differ between
    classes, so the keyword form is the portable one.
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # builtins / C++ modules have no signature
        return None
    return "pixel_values" if "pixel_values" in params else None
