"""Model sources: a registry of schemes that build a model from a string.

Importing this package registers the built-in schemes, in this order: ``hf``,
``timm``, ``torchvision``, ``py``. Their optional packages (transformers, timm,
torchvision) are imported only when a string of that scheme is built.
"""

from cpd.io.sources.base import (
    LoadedModel,
    Source,
    build_source,
    register_source,
    sources,
    valid_forms,
)

# Imported for their registration side effect; the order is the order of valid_forms().
from cpd.io.sources import hf_source, timm_source, torchvision_source, py_source  # noqa: E402,F401  isort: skip

__all__ = ["LoadedModel", "Source", "build_source", "register_source", "sources", "valid_forms"]
