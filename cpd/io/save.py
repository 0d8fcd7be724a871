"""``save_pruned``: write a pruned model as a folder of safetensors + JSON, atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cpd.io.atomic_dir import atomic_dir
from cpd.io.card import model_card
from cpd.io.errors import FolderError, ModelSourceError
from cpd.io.folder_format import (
    CARD_FILE,
    FORMAT,
    FORMAT_VERSION,
    META_FILE,
    PLAN_FILE,
    WEIGHTS_FILE,
    base_plan_file,
    cpd_version,
    is_cpd_folder,
)
from cpd.io.inputs import InputSpec, infer_kwarg
from cpd.io.sources import sources, valid_forms
from cpd.io.spec import parse_model_string
from cpd.io.weights import file_sha256, save_weights
from cpd.plan.plan import Plan
from cpd.report.counting import count

__all__ = ["check_destination", "save_pruned"]


def _check_source(source: str) -> None:
    try:
        scheme = parse_model_string(source).scheme
    except ModelSourceError:
        scheme = None
    if scheme not in {s.scheme for s in sources()}:
        raise ModelSourceError(f"cannot save with source {source!r}: it must be a model string "
                               f"({valid_forms().rsplit(', or', 1)[0]}) that rebuilds the original "
                               "architecture; for a model loaded from a cpd folder pass its .source "
                               "and base_plans=.plans")


def check_destination(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`FolderError` unless :func:`save_pruned` may write ``folder``.

    Lets a caller fail before hours of work rather than at the end.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"cannot save to {folder}: it is a file")
    if folder.is_dir() and any(folder.iterdir()) and not is_cpd_folder(folder):
        # Replacing means deleting the old contents: only ever do that to our own kind.
        raise FolderError(f"refusing to replace {folder}: it is a non-empty folder that was not "
                          f"saved by cpd (no {META_FILE})")


def _json_number(v: Any) -> Any:
    """Metrics may be numpy / torch scalars; JSON wants plain Python."""
    if hasattr(v, "item") and callable(v.item):
        return v.item()
    return v


def save_pruned(
    folder: str | os.PathLike[str],
    model: nn.Module,
    plan: Plan,
    source: str,
    example_shape: Sequence[int] | InputSpec,
    metrics: dict[str, Any] | None = None,
    *,
    base_plans: Sequence[Plan] = (),
    macs: tuple[int | None, int] | None = None,
    params: tuple[int | None, int] | None = None,
) -> Path:
    """Write ``model`` (already pruned by ``plan``) to ``folder``, replacing it atomically.

    The folder is built in a temporary sibling and renamed into place only when
    complete; on any error an existing folder is left as it was. An existing
    destination is replaced only if it is empty or a cpd folder.

    Args:
        folder: destination folder.
        model: the pruned model, ``plan`` (after ``base_plans``) applied to the
            architecture ``source`` builds.
        plan: the plan that produced ``model``.
        source: model string of the *original* architecture (``hf:vit?...``,
            ``py:pkg.mod:factory``); not a folder.
        example_shape: shape of the example image batch, e.g. ``(1, 3, 224, 224)``
            (passed as ``pixel_values=`` when ``model.forward`` has that parameter),
            or an :class:`~cpd.io.inputs.InputSpec` giving the form explicitly.
        metrics: optional evaluation results (name -> number or string) for the
            card and ``cpd.json``.
        base_plans: plans applied before ``plan`` (when ``model`` came from a cpd
            folder and was pruned again): ``LoadedModel.plans``.
        macs, params: ``(before, after)`` counts for the card (``PruneResult.macs``
            and ``.params``); when omitted, ``after`` is counted on the example
            input and ``before`` is shown as unknown.

    Returns:
        The folder's path.

    Raises:
        ModelSourceError: ``source`` is not a model string of a known scheme.
        FolderError: ``folder`` is a file or a foreign non-empty folder.
    """
    folder = Path(folder)
    _check_source(source)
    check_destination(folder)
    if isinstance(example_shape, InputSpec):
        inputs = example_shape
    else:
        inputs = InputSpec(tuple(int(d) for d in example_shape), infer_kwarg(model))
    if macs is None or params is None:
        m, p = count(model, inputs.make())
        macs, params = macs or (None, m), params or (None, p)
    plans = [*base_plans, plan]
    names = [base_plan_file(i) for i in range(len(base_plans))] + [PLAN_FILE]
    clean_metrics = {str(k): _json_number(v) for k, v in (metrics or {}).items()}
    with atomic_dir(folder) as tmp:
        save_weights(model, tmp / WEIGHTS_FILE)
        for name, p in zip(names, plans, strict=True):
            (tmp / name).write_text(json.dumps(p.to_json(), indent=1), encoding="utf-8")
        meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cpd_version": cpd_version(),
            "source": source,
            "input": inputs.to_json(),
            "plans": names,
            "weights": WEIGHTS_FILE,
            "weights_sha256": file_sha256(tmp / WEIGHTS_FILE),
            "counts": {"macs": list(macs), "params": list(params)},
        }
        if clean_metrics:
            meta["metrics"] = clean_metrics
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        card = model_card(name=folder.name, source=source, inputs=inputs, plans=plans, macs=macs,
                          params=params, metrics=clean_metrics, version=meta["cpd_version"])
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
    return folder
