"""Loading a folder saved by :func:`cpd.io.save_pruned` (no pickle, no code from the folder)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from cpd.apply.apply import apply_plan
from cpd.io.errors import FolderError, WeightsMismatchError
from cpd.io.folder_format import read_meta, read_plan_json
from cpd.io.inputs import InputSpec
from cpd.io.sources import LoadedModel, build_source
from cpd.io.spec import parse_model_string
from cpd.io.weights import file_sha256, load_weights
from cpd.plan.plan import Plan

__all__ = ["load", "load_folder"]


def _plans(folder: Path, names: list[str]) -> list[Plan]:
    plans = []
    for name in names:
        try:
            plans.append(Plan.from_json(read_plan_json(folder, name)))
        except FolderError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise FolderError(f"{folder / name} is not a valid cpd plan ({e})") from e
    return plans


def load_folder(folder: str | os.PathLike[str], *, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """Rebuild a saved pruned model, with its source, plans and example input.

    Steps: read ``cpd.json``; build the original architecture from its source
    string (random weights); apply each plan in order with
    :func:`~cpd.apply.apply.apply_plan`; check the weights file against the
    checksum recorded at save time; load it strictly; switch to eval mode.

    Args:
        folder: the folder :func:`~cpd.io.save_pruned` wrote.
        input_shape: replaces the saved example input shape (same form).

    Raises:
        FolderError: not a cpd folder, a missing / corrupt file, or a plan that
            does not fit the architecture the source builds.
        WeightsMismatchError: the weights do not fit the pruned architecture.
        ModelSourceError: the source string cannot be built here.
        MissingDependencyError: the source needs a package that is not installed.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    source = str(meta["source"])
    parse_model_string(source)  # a folder's source is never itself a folder path
    inputs = InputSpec.from_json(meta["input"]).with_shape(input_shape)
    plans = _plans(folder, list(meta["plans"]))
    loaded = build_source(source, from_folder=True)
    model = loaded.model
    for name, plan in zip(meta["plans"], plans, strict=True):
        try:
            model = apply_plan(model, plan, inplace=True)
        except KeyError as e:
            msg = e.args[0] if e.args else str(e)
            raise WeightsMismatchError(f"{folder / name} does not fit the model {source} builds: {msg}") from e
    weights = folder / str(meta["weights"])
    expected = meta.get("weights_sha256")
    if expected and weights.is_file() and file_sha256(weights) != expected:
        raise FolderError(f"{weights} is corrupt or was modified: its SHA-256 differs from the one "
                          "recorded in cpd.json")
    load_weights(model, weights)
    return LoadedModel(model.eval(), inputs, source, plans, folder, meta)


def load(folder: str | os.PathLike[str]) -> nn.Module:
    """The pruned ``nn.Module`` saved in ``folder``, in eval mode.

    It gives bit-identical outputs to the model that was saved. See
    :func:`load_folder` for the steps and errors.
    """
    return load_folder(folder).model

