"""``torchvision:NAME[?key=value&...]`` -- a torchvision model with random weights.

``torchvision.models.get_model(NAME, weights=None, **options)`` (e.g.
``torchvision:resnet18?num_classes=10``). torchvision records no input size, so
the example input is 1 x 3 x 224 x 224 unless ``--input-shape`` says otherwise.
Needs the optional ``torchvision`` package.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch

from cpd.io.errors import ModelSourceError, require
from cpd.io.inputs import InputSpec
from cpd.io.sources.base import LoadedModel, check_module, register_source
from cpd.io.spec import ModelSpec

__all__ = ["build_torchvision"]


def build_torchvision(spec: ModelSpec, *, from_folder: bool = False) -> LoadedModel:
    """Build a ``torchvision:`` model string (see the module docstring)."""
    tv: Any = require("torchvision", spec.raw)
    names = list(tv.models.list_models())
    if spec.target not in names:
        close = difflib.get_close_matches(spec.target, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelSourceError(f"torchvision has no model {spec.target!r}{hint}")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = tv.models.get_model(spec.target, weights=None, **spec.options)
    except Exception as e:  # noqa: BLE001 - bad kwargs for this model
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelSourceError(f"cannot build {spec.raw}: {msg}") from e
    return LoadedModel(check_module(model, spec.raw).eval(), InputSpec(), spec.raw)


register_source("torchvision", build_torchvision, "torchvision:NAME[?key=value&...]")
