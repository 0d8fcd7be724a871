"""``py:package.module:factory[?key=value&...]`` -- a model from the user's own code.

The module is imported (it must be installed, or importable from the current
directory or ``PYTHONPATH``) and ``factory(**options)`` is called. The factory
returns either an ``nn.Module`` (example input 1 x 3 x 224 x 224) or a pair
``(module, input_shape)`` such as ``(net, (1, 3, 32, 32))``. ``factory`` may be a
dotted path inside the module (``Net.tiny``).

Loading a cpd folder whose source is ``py:`` imports *the user's* module and calls
its factory: the folder holds only weights and JSON, never code. Because the
folder names which callable to call, strings read from a folder are held to a
stricter rule: the module must not be part of the standard library, and the
callable must be defined in the package the string names (so a crafted
``cpd.json`` cannot make cpd call ``os:system`` or ``shutil:rmtree``). Still,
load folders only from people you trust, as with any model recipe.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from torch import nn

from cpd.io.errors import ModelSourceError
from cpd.io.inputs import InputSpec, infer_kwarg
from cpd.io.sources.base import LoadedModel, check_module, register_source
from cpd.io.spec import ModelSpec, parse_shape

__all__ = ["build_py"]


def _import(module_name: str, raw: str) -> Any:
    # The `cpd` console script does not put the working directory on sys.path
    # (`python -m` does); users expect `py:mymodels:net` to find ./mymodels.py.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.split(".")[: len(e.name.split("."))] == e.name.split("."):
            raise ModelSourceError(f"cannot import {module_name!r} for {raw!r}: no module named {e.name!r} "
                                   "(it must be installed, or on PYTHONPATH / in the current directory)") from e
        raise ModelSourceError(f"importing {module_name!r} for {raw!r} failed: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise ModelSourceError(f"importing {module_name!r} for {raw!r} failed: {type(e).__name__}: {e}") from e


def _check_folder_factory(module_name: str, factory: Any, raw: str) -> None:
    """The stricter rule for strings read from a folder (see the module docstring)."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise ModelSourceError(f"refusing saved source {raw!r}: a py: source may not name a "
                               "standard-library module")
    defined_in = getattr(factory, "__module__", None) or ""
    if defined_in.split(".")[0] != top:
        raise ModelSourceError(f"refusing saved source {raw!r}: the factory is defined in "
                               f"{defined_in or 'an unknown module'!r}, not in package {top!r}")


def _resolve(spec: ModelSpec) -> tuple[str, Any]:
    module_name, sep, attr = spec.target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelSourceError(f"bad py: source {spec.raw!r}: expected py:package.module:factory")
    obj: Any = _import(module_name, spec.raw)
    for part in attr.split("."):
        if part.startswith("_") or not hasattr(obj, part):
            raise ModelSourceError(f"{module_name!r} has no public attribute {attr!r} (from {spec.raw!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSourceError(f"{module_name}:{attr} is not callable (from {spec.raw!r})")
    return module_name, obj


def _split_result(result: Any, raw: str) -> tuple[nn.Module, tuple[int, ...] | None]:
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        shape = result[1]
        try:
            dims = parse_shape(",".join(str(int(d)) for d in shape), f"input shape returned by {raw}")
        except (TypeError, ValueError) as e:
            raise ModelSourceError(f"{raw} returned ({type(result[0]).__name__}, {shape!r}); the second "
                                   "item must be an input shape such as (1, 3, 224, 224)") from e
        return result[0], dims
    return check_module(result, raw), None


def build_py(spec: ModelSpec, *, from_folder: bool = False) -> LoadedModel:
    """Build a ``py:`` model string (see the module docstring)."""
    module_name, factory = _resolve(spec)
    if from_folder:
        _check_folder_factory(module_name, factory, spec.raw)
    try:
        if spec.options:
            inspect.signature(factory).bind(**spec.options)
    except TypeError as e:
        raise ModelSourceError(f"{spec.raw}: {e}") from e
    except ValueError:
        pass  # no signature to check (a C extension); let the call decide
    try:
        result = factory(**spec.options)
    except Exception as e:  # noqa: BLE001 - the user's factory failed
        raise ModelSourceError(f"{spec.raw} failed: {type(e).__name__}: {e}") from e
    model, shape = _split_result(result, spec.raw)
    inputs = InputSpec(kwarg=infer_kwarg(model)).with_shape(shape)
    return LoadedModel(model.eval(), inputs, spec.raw)


register_source("py", build_py, "py:package.module:factory[?key=value&...]")
