"""``hf:`` -- Hugging Face transformers models, built offline.

Two forms:

* ``hf:MODEL_TYPE[?key=value&...]`` (``hf:vit``, ``hf:segformer?num_labels=19``):
  the default config of that model type (``AutoConfig.for_model``) with the
  options as config overrides, and *random* weights (seeded, so the same string
  always gives the same model). The model class is the image-classification auto
  class when the type has one, else the semantic-segmentation one, else
  ``AutoModel``; the reserved option ``task=classification|segmentation|base``
  picks one (``hf:segformer?task=segmentation`` is SegFormer's segmentation model).
  Unknown override names are rejected, since a config silently
  stores any attribute and a typo would otherwise go unnoticed.
* ``hf:PATH`` (``hf:./my-vit``, ``hf:/models/vit``; a path must contain a
  separator or start with ``.`` or ``~``): a folder written by
  ``save_pretrained``, loaded with ``local_files_only=True`` and without
  ``trust_remote_code``, so nothing in the folder is executed.

The example input is ``pixel_values`` of shape ``(1, num_channels, H, W)`` from the
config's ``num_channels`` and ``image_size`` (or those of its vision / backbone
sub-config); 3 x 224 x 224 when the config has neither.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch

from cpd.io.errors import ModelSourceError, require
from cpd.io.inputs import InputSpec, infer_kwarg
from cpd.io.sources.base import LoadedModel, check_module, register_source
from cpd.io.spec import ModelSpec

__all__ = ["build_hf", "hf_input_spec"]

#: (mapping in transformers.models.auto.modeling_auto, auto class), most specific first.
_AUTO_CLASSES = (
    ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "AutoModelForImageClassification"),
    ("MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES", "AutoModelForSemanticSegmentation"),
    ("MODEL_MAPPING_NAMES", "AutoModel"),
)
SEED = 0
#: values of the reserved ``task=`` option -> the mapping whose auto class to use
_TASKS = {"classification": _AUTO_CLASSES[0], "segmentation": _AUTO_CLASSES[1],
          "base": _AUTO_CLASSES[2]}


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _looks_like_path(target: str) -> bool:
    # Model types are identifiers (vit, mobilenet_v2); a path must say it is one
    # (a separator, or a leading dot or tilde), so that a folder that happens to be
    # called "vit" in the working directory never shadows hf:vit.
    return any(c in target for c in "/\\") or target.startswith((".", "~"))


def hf_input_spec(config: Any, kwarg: str | None = "pixel_values") -> InputSpec:
    """``(1, C, H, W)`` from ``num_channels`` / ``image_size`` of ``config`` or a sub-config."""
    size = chans = None
    for c in (config, *(getattr(config, n, None) for n in ("vision_config", "backbone_config"))):
        if c is None or isinstance(c, dict):
            continue
        size = size if size is not None else getattr(c, "image_size", None)
        chans = chans if chans is not None else getattr(c, "num_channels", None)
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[-1])
    else:
        h = w = int(size or 224)
    return InputSpec((1, int(chans or 3), h, w), kwarg)


def _auto_class(transformers: Any, model_type: str, task: str | None = None) -> tuple[Any, str]:
    """The auto class for ``model_type`` (for ``task`` if given) and its first model class."""
    from transformers.models.auto import modeling_auto

    if task is not None:
        if task not in _TASKS:
            raise ModelSourceError(f"hf:{model_type}?task={task}: task must be one of "
                                   f"{', '.join(_TASKS)}")
        mapping_name, auto_name = _TASKS[task]
        if model_type not in getattr(modeling_auto, mapping_name, {}):
            have = [t for t, (m, _) in _TASKS.items() if model_type in getattr(modeling_auto, m, {})]
            raise ModelSourceError(f"hf:{model_type} has no {task} model in this transformers; "
                                   f"it has: {', '.join(have) or 'none'}")
    for mapping_name, auto_name in ([_TASKS[task]] if task else _AUTO_CLASSES):
        mapping = getattr(modeling_auto, mapping_name, {})
        if model_type in mapping:
            names = mapping[model_type]
            return getattr(transformers, auto_name), names if isinstance(names, str) else names[0]
    raise ModelSourceError(f"hf:{model_type} has no model class in this transformers "
                           f"({transformers.__version__})")


def _from_model_type(transformers: Any, spec: ModelSpec) -> LoadedModel:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = spec.target
    options = dict(spec.options)
    task = options.pop("task", None)
    if model_type not in CONFIG_MAPPING_NAMES:
        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING_NAMES), n=3)
        hint = f"; did you mean {', '.join('hf:' + c for c in close)}?" if close else " (e.g. hf:vit, hf:resnet)"
        if Path(model_type).is_dir():
            hint += f"; for the folder {model_type!r} write hf:./{model_type}"
        raise ModelSourceError(f"unknown Hugging Face model type {model_type!r} in "
                               f"transformers {transformers.__version__}{hint}")
    default = AutoConfig.for_model(model_type)
    unknown = [k for k in options if not hasattr(default, k)]
    if unknown:
        known = [k for k in default.to_dict() if not k.startswith("_")]
        close = difflib.get_close_matches(unknown[0], known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelSourceError(f"{type(default).__name__} has no field {unknown[0]!r}{hint}; "
                               f"options of hf:{model_type} override config fields")
    auto_cls, first_class = _auto_class(transformers, model_type, None if task is None else str(task))
    try:
        # Constructor kwargs rather than setattr, so fields derived in __init__
        # (num_labels -> id2label, per-stage lists) follow the overrides.
        config = AutoConfig.for_model(model_type, **options)
        if not getattr(config, "architectures", None):
            # A fresh config names no architecture; for types mapped to several
            # classes (deit, levit) from_config then fails. Name the default one.
            config.architectures = [first_class]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = auto_cls.from_config(config)
    except Exception as e:  # noqa: BLE001 - any failure means these options do not build
        raise ModelSourceError(f"cannot build {spec.raw}: {_one_line(e)}") from e
    return _finish(model, config, spec)


def _from_folder(transformers: Any, spec: ModelSpec) -> LoadedModel:
    from transformers import AutoConfig

    path = Path(spec.target).expanduser()
    if spec.options:
        raise ModelSourceError(f"{spec.raw}: options are only accepted with hf:MODEL_TYPE, "
                               "not with a saved folder")
    if not path.is_dir():
        raise ModelSourceError(f"no such folder {spec.target!r} for {spec.raw!r} (hf:PATH loads a local "
                               "save_pretrained folder; downloading from the Hub is not supported)")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"{spec.target!r} has no config.json: not a save_pretrained folder")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        if cls is None:
            cls, _ = _auto_class(transformers, config.model_type)
        model = cls.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except ModelSourceError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelSourceError(f"cannot load {spec.raw}: {_one_line(e)}") from e
    return _finish(model, config, spec)


def _finish(model: Any, config: Any, spec: ModelSpec) -> LoadedModel:
    model = check_module(model, spec.raw)
    kwarg = infer_kwarg(model)
    if kwarg is None:
        raise ModelSourceError(f"{spec.raw} builds {type(model).__name__}, whose forward takes no "
                               "pixel_values: not an image model")
    return LoadedModel(model.eval(), hf_input_spec(config, kwarg), spec.raw)


def build_hf(spec: ModelSpec, *, from_folder: bool = False) -> LoadedModel:
    """Build an ``hf:`` model string (see the module docstring)."""
    transformers = require("transformers", f"{spec.scheme}:{spec.target}")
    if _looks_like_path(spec.target):
        return _from_folder(transformers, spec)
    return _from_model_type(transformers, spec)


register_source("hf", build_hf, ("hf:MODEL_TYPE[?key=value&...]", "hf:/path/to/save_pretrained_dir"))
