"""``--data NAME[:ROOT][?key=value&...]``: batches for the data-driven criteria.

``NAME`` is a dataset of :func:`cpd.data.build_dataset` (``digits``, ``cifar10``,
``imagefolder``, ``camvid``, ``ade20k``...), ``ROOT`` its folder (``digits`` needs
none), and the options are keyword arguments of the dataset class in the model
string syntax, e.g. ``digits?size=32&channels=3``. The training split is used,
in order (no shuffling, so scores are reproducible). ``cpd eval --data`` takes the
same form. The loss is the one of the
dataset's task: cross-entropy for classification, per-pixel cross-entropy with
the dataset's ignore label for segmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch

from cpd.io.errors import CpdInputError
from cpd.io.inputs import InputSpec
from cpd.io.spec import parse_options

__all__ = ["DataSpec", "parse_data", "scoring_data"]


class DataSpec(NamedTuple):
    """A parsed ``--data`` value."""

    name: str
    root: str | None
    options: dict[str, Any]


def parse_data(text: str) -> DataSpec:
    """``"cifar10:/data/cifar?x=1"`` -> ``DataSpec("cifar10", "/data/cifar", {"x": 1})``."""
    head, _, query = text.partition("?")
    name, _, root = head.partition(":")
    if not name.strip():
        raise CpdInputError(f"bad --data {text!r}: expected NAME[:ROOT][?key=value&...], e.g. "
                            "cifar10:/data/cifar10 or digits?size=32")
    return DataSpec(name.strip(), root or None, parse_options(query, text))


def scoring_data(
    text: str, inputs: InputSpec, batch_size: int
) -> tuple[Iterator[tuple[Any, torch.Tensor]], Callable[[Any, torch.Tensor], torch.Tensor]]:
    """The ``(data, loss_fn)`` pair :func:`cpd.prune` takes, from a ``--data`` value.

    Args:
        text: the ``--data`` value.
        inputs: the model's input form; image batches ``(B, C, H, W)`` are passed
            the same way (bare, or as ``pixel_values=``).
        batch_size: images per batch.

    Returns:
        An iterator of ``(model inputs, targets)`` and ``loss_fn(outputs, targets)``.

    Raises:
        CpdInputError: malformed value, unknown dataset or option, missing root.
    """
    from torch.utils.data import DataLoader

    from cpd.config.datasets import open_split, task_for

    spec = parse_data(text)
    dataset = open_split(spec.name, spec.root, "train", spec.options, what=f"--data {text}")
    task = task_for(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)

    def batches() -> Iterator[tuple[Any, torch.Tensor]]:
        for x, y in loader:
            yield inputs.wrap(x), y

    return batches(), task.loss
