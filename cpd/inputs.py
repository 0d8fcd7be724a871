"""Calling a model on "example inputs", whatever form they take.

Throughout cpd, *example inputs* are one of:

* a ``Tensor``: passed as the single positional argument, ``model(x)``;
* a ``tuple`` (or ``list``): the positional arguments, ``model(*args)``;
* a ``Mapping`` (``dict``): keyword arguments, ``model(**kwargs)``; Hugging Face
  vision models take ``{"pixel_values": x}``.

A list is unpacked like a tuple, so the same example inputs mean the same call
everywhere in cpd; a model taking a
list of images (detection) gets ``([img0, img1],)``. Anything else is passed as
the single argument. Tensors may be nested inside tuples, lists and dicts; the
helpers here walk those containers.

The *batch dimension* is dim 0. The reference batch size is dim 0 of the first
tensor found (depth-first, in argument / key order); a tensor whose dim 0 differs
from it (a shared mask, a scalar) is treated as unbatched and left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeAlias

import torch
from torch import nn

#: Tensor, tuple (or list) of positional arguments, or mapping of keyword arguments.
ExampleInputs: TypeAlias = "torch.Tensor | tuple[Any, ...] | list[Any] | Mapping[str, Any]"


def call_model(model: Callable[..., Any], example_inputs: ExampleInputs) -> Any:
    """Call ``model`` with ``example_inputs`` in the form it expects.

    Args:
        model: any callable, usually an ``nn.Module``.
        example_inputs: a tensor (``model(x)``), a tuple or list
            (``model(*args)``) or a mapping (``model(**kwargs)``); anything else
            is passed as the one argument.

    Returns:
        Whatever the model returns (tensor, tuple, ``ModelOutput``...).
    """
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    return model(example_inputs)


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor in ``obj``, rebuilding tuples, lists and dicts.

    Non-tensor leaves are returned unchanged. Mappings come back as plain ``dict``
    (insertion order kept); named tuples keep their type.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(map_tensors(fn, v) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors in ``obj`` depth-first, in argument / key order.

    This order is the one :func:`map_tensors` visits, so the two can be used to
    flatten and rebuild a structure (the ONNX exporter relies on that). ``None`` and
    other non-tensor leaves are skipped, which also drops the unset fields of a
    Hugging Face ``ModelOutput`` (it is a ``Mapping`` holding only the set ones).
    """
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from iter_tensors(v)


def tensor_paths(obj: Any, prefix: str = "input") -> list[str]:
    """Names for the tensors of ``obj``, in :func:`iter_tensors` order.

    A bare tensor is ``prefix``; tuple items get ``_0``, ``_1``...; mapping entries
    at the top level are named by their key (``pixel_values``), deeper ones are
    joined with ``_``. Used as ONNX input names.
    """
    out: list[str] = []

    def walk(o: Any, path: str, top: bool) -> None:
        if isinstance(o, torch.Tensor):
            out.append(path)
        elif isinstance(o, Mapping):
            for k, v in o.items():
                walk(v, str(k) if top else f"{path}_{k}", False)
        elif isinstance(o, (tuple, list)):
            for i, v in enumerate(o):
                walk(v, f"{path}_{i}", False)

    walk(obj, prefix, True)
    return out


def batch_size_of(example_inputs: ExampleInputs) -> int:
    """Dim 0 of the first tensor in ``example_inputs`` (the reference batch size).

    Raises:
        ValueError: if there is no tensor with at least one dimension.
    """
    for t in iter_tensors(example_inputs):
        if t.dim() > 0:
            return int(t.shape[0])
    raise ValueError("example inputs contain no tensor with a batch dimension")


def is_batched(t: torch.Tensor, reference: int) -> bool:
    """True when ``t`` has a dim 0 of the reference batch size."""
    return t.dim() > 0 and int(t.shape[0]) == reference


def batch_like(example_inputs: ExampleInputs, batch_size: int) -> ExampleInputs:
    """Resize the batch dimension of every batched tensor to ``batch_size``.

    Rows are taken cyclically (row ``i`` of the result is row ``i % b`` of the
    input, ``b`` the reference batch size), so this both repeats a batch of 1 and
    shrinks a larger one. The result is a fresh contiguous copy rather than an
    ``expand`` view: stride-0 tensors would make timings unrealistic and break
    models that write into their inputs.

    Args:
        example_inputs: tensor / tuple / mapping; tensors of shape ``(b, ...)``.
        batch_size: the wanted batch size, >= 1.

    Returns:
        The same structure with tensors of shape ``(batch_size, ...)``; tensors
        without the reference batch dimension are returned unchanged.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ref = batch_size_of(example_inputs)

    def resize(t: torch.Tensor) -> torch.Tensor:
        if not is_batched(t, ref):
            return t
        index = torch.arange(batch_size, device=t.device) % ref
        return t.index_select(0, index).contiguous()

    return map_tensors(resize, example_inputs)


def to_device(example_inputs: ExampleInputs, device: torch.device | str) -> ExampleInputs:
    """Move every tensor in ``example_inputs`` to ``device`` (no copy if already there)."""
    return map_tensors(lambda t: t.to(device), example_inputs)


def model_device(model: nn.Module, example_inputs: ExampleInputs | None = None) -> torch.device:
    """The device a model runs on: that of its first parameter or buffer.

    A model without parameters or buffers runs wherever its inputs are; CPU if
    there are none either.
    """
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    for t in iter_tensors(example_inputs):
        return t.device
    return torch.device("cpu")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every module's flag.

    Flags are restored module by module, not with ``model.train(old)``, so a model
    that deliberately keeps some submodules in eval (frozen BatchNorm during
    fine-tuning) gets exactly its previous state back.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def check_example_inputs(example_inputs: object) -> None:
    """Refuse forms that are not example inputs (before a long trace or search).

    Raises:
        TypeError: not a tensor, a tuple/list of arguments or a mapping of kwargs.
    """
    if not isinstance(example_inputs, (torch.Tensor, tuple, list, Mapping)):
        raise TypeError(
            f"example_inputs must be a tensor, a tuple of arguments or a dict of keyword "
            f"arguments, not {type(example_inputs).__name__}"
        )
