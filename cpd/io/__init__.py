"""Models in and out: model strings, and pruned models saved without pickle.

Model strings (see :mod:`cpd.io.spec` for the option syntax)::

    hf:vit?image_size=64&num_labels=10     transformers config, random weights
    hf:./my-saved-vit                      a local save_pretrained folder
    timm:resnet18                          needs timm
    torchvision:resnet18?num_classes=10    needs torchvision
    py:mypkg.models:make_net?width=32      your own factory
    ./pruned-folder                        a folder written by save_pruned

Saving and loading::

    import cpd, cpd.io

    loaded = cpd.io.open_model("hf:vit?image_size=64")
    result = cpd.prune(loaded.model, loaded.example_inputs(), ratio=0.3)
    cpd.io.save_pruned("vit-pruned", result.model, result.plan, loaded.source,
                       loaded.inputs.shape, macs=result.macs, params=result.params)
    model = cpd.io.load("vit-pruned")      # nn.Module, eval mode, same outputs
"""

from cpd.io.errors import (
    CpdInputError,
    FolderError,
    MissingDependencyError,
    ModelSourceError,
    WeightsMismatchError,
)
from cpd.io.inputs import InputSpec
from cpd.io.load import load, load_folder
from cpd.io.resolve import open_model
from cpd.io.save import save_pruned
from cpd.io.sources import (
    LoadedModel,
    Source,
    build_source,
    register_source,
    sources,
    valid_forms,
)
from cpd.io.spec import ModelSpec, parse_model_string, parse_shape

__all__ = [
    "CpdInputError",
    "FolderError",
    "InputSpec",
    "LoadedModel",
    "MissingDependencyError",
    "ModelSourceError",
    "ModelSpec",
    "Source",
    "WeightsMismatchError",
    "build_source",
    "load",
    "load_folder",
    "open_model",
    "parse_model_string",
    "parse_shape",
    "register_source",
    "save_pruned",
    "sources",
    "valid_forms",
]
