"""Datasets and tasks for whole-model commands (``cpd run``, ``cpd eval``).

Shared pieces: build a split with a one-line error, pick the task a dataset
implies, feed images the way the model takes them (``pixel_values=`` for Hugging
Face models), and check that the model predicts as many classes as the dataset
has before any time is spent training it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from cpd.inputs import evaluating
from cpd.io.errors import CpdInputError
from cpd.io.inputs import InputSpec
from cpd.tasks.outputs import logits_of
from cpd.tasks.task import Task, build_task

__all__ = ["KeywordInputs", "check_classes", "example_input", "in_model_form", "open_split", "task_for"]


def open_split(name: str, root: str | Path | None, split: str, options: dict[str, Any],
               *, what: str) -> Dataset[Any]:
    """``build_dataset(name, root, split, **options)``; errors become one :class:`CpdInputError`.

    Args:
        what: names the setting in the message (``"data"``, ``"--data digits"``).
    """
    from cpd.data.factory import build_dataset

    try:
        return build_dataset(name, root, split=split, **options)
    except (ValueError, FileNotFoundError, NotADirectoryError, TypeError) as e:
        raise CpdInputError(f"{what}: {e}") from e


def task_for(dataset: Dataset[Any], name: str | None = None,
             options: dict[str, Any] | None = None) -> Task:
    """The task ``name`` (default: the dataset's ``task``), with the dataset's classes.

    Segmentation gets ``num_classes`` and ``ignore_index`` from the dataset unless
    ``options`` sets them.
    """
    kind = (name or getattr(dataset, "task", "classification")).strip().lower()
    opts = dict(options or {})
    if kind == "segmentation":
        if hasattr(dataset, "num_classes"):
            opts.setdefault("num_classes", int(dataset.num_classes))  # type: ignore[attr-defined]
        opts.setdefault("ignore_index", int(getattr(dataset, "ignore_index", 255)))
    try:
        return build_task(kind, **opts)
    except (TypeError, ValueError) as e:  # an option the task class does not take, or a bad value
        raise CpdInputError(f"task {kind}: {e}") from e


class KeywordInputs(Dataset[Any]):
    """``(x, y)`` items as ``({kwarg: x}, y)``: the batch form of a ``pixel_values=`` model.

    The default collate stacks the dicts into ``{kwarg: (B, C, H, W)}``.
    """

    def __init__(self, dataset: Dataset[Any], kwarg: str) -> None:
        self.dataset, self.kwarg = dataset, kwarg
        for attr in ("num_classes", "task", "ignore_index"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[dict[str, Any], Any]:
        x, y = self.dataset[index]
        return {self.kwarg: x}, y


def in_model_form(dataset: Dataset[Any], inputs: InputSpec) -> Dataset[Any]:
    """``dataset`` whose inputs are passed the way ``inputs`` says (bare or by keyword)."""
    return dataset if inputs.kwarg is None else KeywordInputs(dataset, inputs.kwarg)


def example_input(dataset: Dataset[Any], inputs: InputSpec) -> Any:
    """The first image of ``dataset`` as a batch of one, ``(1, C, H, W)``, in the model's form."""
    x = dataset[0][0]
    if not isinstance(x, torch.Tensor):
        raise CpdInputError(f"expected the dataset's images to be tensors, got {type(x).__name__}")
    return inputs.wrap(x[None])


def _predicted_classes(logits: torch.Tensor, task: Task) -> int:
    """Classes in ``logits``: ``(B, C)`` for classification, ``(B, C, h, w)`` for segmentation."""
    shape = tuple(logits.shape)
    if task.name == "segmentation" and logits.dim() != 4:
        raise CpdInputError(
            f"segmentation needs per-pixel logits (B, C, h, w), but the model outputs {shape}: use a "
            "segmentation model (for Hugging Face, e.g. a save_pretrained folder of a "
            "...ForSemanticSegmentation class, hf:/path/to/folder)")
    if task.name != "segmentation" and logits.dim() != 2:
        raise CpdInputError(f"classification needs logits (B, C), but the model outputs {shape}; "
                            "a per-pixel model needs the segmentation task")
    return int(logits.shape[1])


def check_classes(model: nn.Module, example: Any, task: Task, dataset: Dataset[Any], data_name: str) -> None:
    """One forward on ``example``; a one-line error if the model has fewer outputs than classes.

    Raises:
        CpdInputError: the model predicts fewer classes than the dataset (or the
            segmentation task) has.
    """
    from cpd.inputs import call_model

    wanted = getattr(task, "num_classes", None) or getattr(dataset, "num_classes", None)
    if wanted is None:
        return
    with evaluating(model), torch.no_grad():
        logits = logits_of(call_model(model, example))
    got = _predicted_classes(logits, task)
    if got < int(wanted):
        raise CpdInputError(
            f"the model predicts {got} classes but {data_name} has {wanted}: build it with {wanted} "
            f"outputs (hf:...?num_labels={wanted}, a py: factory's num_classes={wanted})")
