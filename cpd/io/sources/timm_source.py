"""``timm:NAME[?key=value&...]`` -- a timm model with random weights.

``timm.create_model(NAME, pretrained=False, **options)``; the example input is
``(1, *pretrained_cfg["input_size"])`` (e.g. 1 x 3 x 224 x 224), the size the
architecture was designed for. Needs the optional ``timm`` package.
"""

from __future__ import annotations

from typing import Any

import torch

from cpd.io.errors import ModelSourceError, require
from cpd.io.inputs import DEFAULT_SHAPE, InputSpec
from cpd.io.sources.base import LoadedModel, check_module, register_source
from cpd.io.spec import ModelSpec

__all__ = ["build_timm"]


def _input_shape(model: Any) -> tuple[int, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else getattr(cfg, "input_size", None)
    return (1, *(int(s) for s in size)) if size else DEFAULT_SHAPE


def build_timm(spec: ModelSpec, *, from_folder: bool = False) -> LoadedModel:
    """Build a ``timm:`` model string (see the module docstring)."""
    timm: Any = require("timm", spec.raw)
    if not timm.is_model(spec.target):
        close = timm.list_models(f"*{spec.target}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ModelSourceError(f"timm has no model {spec.target!r}{hint}")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(spec.target, pretrained=False, **spec.options)
    except Exception as e:  # noqa: BLE001 - bad kwargs for this model
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelSourceError(f"cannot build {spec.raw}: {msg}") from e
    model = check_module(model, spec.raw).eval()
    return LoadedModel(model, InputSpec(_input_shape(model)), spec.raw)


register_source("timm", build_timm, "timm:NAME[?key=value&...]")
