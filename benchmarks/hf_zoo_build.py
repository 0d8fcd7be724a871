"""Building the Hugging Face vision zoo offline: enumeration, configs, example inputs.

Part of :mod:`hf_zoo` (which re-exports everything here); see its docstring.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable

from hf_zoo_run import _short, _where

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

TASKS: dict[str, tuple[str, str]] = {
    # task -> (mapping constant in transformers.models.auto.modeling_auto, auto class)
    "image-classification": (
        "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
        "AutoModelForImageClassification",
    ),
    "semantic-segmentation": (
        "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
        "AutoModelForSemanticSegmentation",
    ),
}
DEFAULT_TASKS = ("image-classification", "semantic-segmentation")
DEFAULT_IMAGE_SIZE = 224  # used only when a config has no image_size anywhere
DEFAULT_CHANNELS = 3  # used only when a config has no num_channels anywhere
SEED = 0


class SkipArch(Exception):
    """The architecture cannot be built, or cannot run unpruned on an image, here.

    ``built`` is True when the model itself was constructed (e.g. it builds but its
    forward takes text tokens instead of ``pixel_values``)."""

    def __init__(self, reason: str, built: bool = False):
        super().__init__(reason)
        self.built = built



# --------------------------------------------------------------------------------------
# enumeration


def _mapping(task: str) -> dict[str, Any]:
    from transformers.models.auto import modeling_auto

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    return getattr(modeling_auto, TASKS[task][0])


def iter_architectures(
    tasks: Iterable[str] = DEFAULT_TASKS,
) -> list[tuple[str, str]]:
    """``[(arch, task), ...]`` for every model type the installed transformers maps to
    the task's auto class, in the mapping's order. ``arch`` is the ``model_type``."""
    if isinstance(tasks, str):
        tasks = (tasks,)
    out = []
    for task in tasks:
        for arch in _mapping(task):
            out.append((arch, task))
    return out


def class_names(arch: str, task: str) -> list[str]:
    """The model class name(s) the mapping lists for ``arch`` (the first one is what
    ``AutoModelFor*.from_config`` builds when the config names no architecture)."""
    v = _mapping(task)[arch]
    return list(v) if isinstance(v, (list, tuple)) else [v]


# --------------------------------------------------------------------------------------
# building


def make_config(arch: str, **overrides: Any):
    """The default config of ``arch``, with ``overrides`` set as attributes."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(arch)
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


def _sub_configs(config) -> list[Any]:
    subs = [config]
    for name in ("vision_config", "backbone_config", "encoder_config"):
        sub = getattr(config, name, None)
        if sub is not None and not isinstance(sub, dict):
            subs.append(sub)
    return subs


def input_spec(config) -> tuple[int, int, int]:
    """``(C, H, W)`` of the example image, from the config's own ``num_channels`` and
    ``image_size`` (looked up in the config, then its vision/backbone sub-config).
    ``image_size`` may be an int or an ``(H, W)`` pair. Falls back to 3 x 224 x 224
    only for configs that carry no such field at all (e.g. ResNetConfig)."""
    size = chans = None
    for c in _sub_configs(config):
        if size is None:
            size = getattr(c, "image_size", None)
        if chans is None:
            chans = getattr(c, "num_channels", None)
    if size is None:
        size = DEFAULT_IMAGE_SIZE
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[-1])
    else:
        h = w = int(size)
    return int(chans or DEFAULT_CHANNELS), h, w


def example_inputs_for(config, seed: int = SEED) -> dict[str, Any]:
    import torch

    c, h, w = input_spec(config)
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(1, c, h, w, generator=g)}


def build(
    arch: str,
    task: str,
    *,
    config_overrides: dict[str, Any] | None = None,
    seed: int = SEED,
):
    """``(model, example_inputs)`` for ``(arch, task)``: default config (plus
    ``config_overrides``), random weights seeded with ``seed``, eval mode.

    Raises :class:`SkipArch` (with the reason) when the config or the model cannot be
    built offline, or when the model's forward takes no ``pixel_values``.
    """
    import torch
    import transformers

    auto_cls = getattr(transformers, TASKS[task][1])
    try:
        config = make_config(arch, **(config_overrides or {}))
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot build"
        raise SkipArch(f"config: {_short(e)}{_where(e)}") from e
    if not getattr(config, "architectures", None):
        # transformers 5.23's _get_model_class iterates config.architectures, which is
        # None on a fresh default config; for arches that map to several classes
        # (deit, levit, perceiver) from_config then dies with "'NoneType' object is not
        # iterable". Name the first mapped class, which is what it means to default to.
        config.architectures = [class_names(arch, task)[0]]
    model_cls = getattr(transformers, class_names(arch, task)[0], None)
    if model_cls is not None:
        _check_image_input(model_cls)  # before building: some text models are huge
    torch.manual_seed(seed)
    try:
        model = auto_cls.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise SkipArch(f"build: {_short(e)}{_where(e)}") from e
    model.eval()
    _check_image_input(type(model), built=True)
    return model, example_inputs_for(config, seed)


# forward parameters that are not model inputs
_NOT_INPUTS = {"pixel_values", "labels", "return_dict", "output_attentions",
               "output_hidden_states", "interpolate_pos_encoding", "head_mask",
               "bool_masked_pos", "kwargs", "args", "return_loss", "use_cache"}


def other_inputs(model_cls) -> list[str]:
    """Forward parameters of ``model_cls`` besides ``pixel_values`` that look like
    inputs (used to explain why an image-only forward fails)."""
    params = inspect.signature(model_cls.forward).parameters
    return [n for n, p in params.items()
            if n != "self" and n not in _NOT_INPUTS and p.kind not in (
                inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]


def _check_image_input(model_cls, built: bool = False) -> None:
    params = inspect.signature(model_cls.forward).parameters
    if "pixel_values" not in params:
        raise SkipArch(
            f"forward takes no pixel_values (inputs: {', '.join(other_inputs(model_cls)[:3])}"
            ", ...): not an image-input model",
            built=built,
        )


def logits_of(out: Any):
    """The main output tensor of a forward (``.logits`` for HF outputs)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(out, (list, tuple)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    if hasattr(out, "to_tuple"):
        return logits_of(out.to_tuple())
    raise TypeError(f"no tensor output in {type(out).__name__}")


def forward_hint(model) -> str:
    others = other_inputs(type(model))
    return f" (forward also takes: {', '.join(others)})" if others else ""


def forward(model, example_inputs):
    import torch

    with torch.no_grad():
        if isinstance(example_inputs, dict):
            return model(**example_inputs)
        if isinstance(example_inputs, (list, tuple)):
            return model(*example_inputs)
        return model(example_inputs)
