"""Example inputs: a tensor, a tuple of positional arguments, or a dict of kwargs."""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn as nn

ExampleInputs = Union[torch.Tensor, tuple[Any, ...], list[Any], dict[str, Any]]


def run_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Call ``model`` with ``example_inputs`` in the form the caller gave.

    A tensor is the single positional argument, a tuple/list the positional
    arguments, and a dict the keyword arguments (``pixel_values=`` for Hugging
    Face vision models).
    """
    if isinstance(example_inputs, torch.Tensor):
        return model(example_inputs)
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    raise TypeError(
        f"example_inputs must be a tensor, a tuple of arguments or a dict of keyword "
        f"arguments, not {type(example_inputs).__name__}"
    )
