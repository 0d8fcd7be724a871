"""One batch of data as the criteria see it: model inputs, targets, and the loss.

``inputs`` may be a tensor (``model(x)``), a tuple/list of positional arguments
(``model(*inputs)``) or a mapping of keyword arguments (``model(**inputs)``, as Hugging
Face models take ``pixel_values=``). ``targets`` is any pytree of tensors (or
``None``) handed to ``loss_fn(outputs, targets)``, which must return a scalar.

Every tensor leaf of inputs and targets whose first dimension equals the batch size
``N`` is treated as batched; other leaves (flags, shared masks) are passed whole to
every sample. ``N`` is the first dimension of the first tensor found in ``inputs``.

To differentiate a distillation loss per sample, compute the teacher's outputs first
and pass them inside ``targets`` (e.g. ``targets=(labels, teacher_logits)``): the
criterion then slices them along with the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _NormBase
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

__all__ = [
    "Batch",
    "LossFn",
    "check_scalar",
    "default_loss",
    "norm_layers_in_eval",
    "train_mode_norm_layers",
    "zeros_like_missing",
]

LossFn = Callable[[Any, Any], Tensor]


def default_loss(outputs: Any, targets: Any) -> Tensor:
    """Loss used when no ``loss_fn`` is given.

    Returns ``outputs.loss`` when the model computed its own loss (Hugging Face models
    given ``labels=``), or ``outputs`` itself when the model returns a scalar.
    """
    loss = getattr(outputs, "loss", None)
    if isinstance(loss, Tensor):
        return loss
    if isinstance(outputs, Tensor) and outputs.ndim == 0:
        return outputs
    raise TypeError(
        "no loss_fn given and the model output has no .loss and is not a scalar; "
        "pass loss_fn(outputs, targets) -> scalar tensor"
    )


def check_scalar(loss: Any) -> Tensor:
    """Raise a clear error unless ``loss`` is a 0-dim tensor."""
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor, got {shape}")
    return loss


@dataclass
class Batch:
    """A batch split into pytree leaves so it can be sliced per sample.

    Attributes:
        leaves: flattened leaves of ``(args, kwargs, targets)``.
        spec: the pytree structure to rebuild them.
        batched: ``batched[i]`` is True when ``leaves[i]`` is a tensor of shape
            ``(N, ...)``.
        size: the batch size ``N``.
    """

    leaves: list[Any]
    spec: TreeSpec
    batched: list[bool]
    size: int

    @staticmethod
    def from_inputs(inputs: Any, targets: Any = None) -> Batch:
        """Build a batch from ``inputs`` (tensor, tuple/list or mapping) and ``targets``."""
        if isinstance(inputs, Tensor):
            args, kwargs = (inputs,), {}
        elif isinstance(inputs, (tuple, list)):
            args, kwargs = tuple(inputs), {}
        elif isinstance(inputs, Mapping):
            args, kwargs = (), dict(inputs)  # dict() also unwraps UserDict-style HF batches
        else:
            raise TypeError(f"inputs must be a tensor, tuple/list or mapping, got {type(inputs).__name__}")
        leaves, spec = tree_flatten((args, kwargs, targets))
        n_inputs = len(tree_flatten((args, kwargs))[0])  # leaves come in (args, kwargs, targets) order
        size = next(
            (int(x.shape[0]) for x in leaves[:n_inputs] if isinstance(x, Tensor) and x.ndim >= 1),
            None,
        )
        if size is None:
            raise ValueError("inputs contain no tensor with a batch dimension")
        batched = [isinstance(x, Tensor) and x.ndim >= 1 and x.shape[0] == size for x in leaves]
        return Batch(leaves=leaves, spec=spec, batched=batched, size=size)

    def batched_leaves(self, start: int = 0, stop: int | None = None) -> list[Tensor]:
        """The batched leaves, sliced to samples ``start:stop`` (each ``(stop-start, ...)``)."""
        return [x[start:stop] for x, b in zip(self.leaves, self.batched) if b]

    def rebuild(self, batched: list[Tensor]) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
        """``(args, kwargs, targets)`` with the batched leaves replaced by ``batched``."""
        it = iter(batched)
        leaves = [next(it) if b else x for x, b in zip(self.leaves, self.batched)]
        args, kwargs, targets = tree_unflatten(leaves, self.spec)
        return args, kwargs, targets

    def loss(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: Mapping[str, Tensor] | None = None,
        batched: list[Tensor] | None = None,
    ) -> Tensor:
        """Scalar loss of the model on this batch (or on ``batched`` leaves instead).

        Args:
            params: parameters to substitute via ``functional_call`` (e.g. detached
                leaves to differentiate without touching ``.grad``); ``None`` runs the
                module as is.
            batched: replacement batched leaves, e.g. one sample ``(1, ...)``.
        """
        args, kwargs, targets = self.rebuild(self.batched_leaves() if batched is None else batched)
        if params is None:
            outputs = model(*args, **kwargs)
        else:
            outputs = functional_call(model, dict(params), args, kwargs, strict=False)
        return check_scalar(loss_fn(outputs, targets))


def train_mode_norm_layers(model: nn.Module) -> list[nn.Module]:
    """Norm layers with running statistics that are in training mode."""
    return [m for m in model.modules() if isinstance(m, _NormBase) and m.track_running_stats and m.training]


@contextmanager
def norm_layers_in_eval(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Temporarily put batch-norm-style layers (anything with running stats) in eval mode.

    Why: in training mode a batch-norm layer couples the samples of a batch through
    its batch statistics (so a per-sample gradient is not defined), updates its
    running statistics in place (which ``torch.func.vmap`` rejects), and scoring would
    change the model as a side effect. In eval mode every sample is independent. The
    rest of the model (dropout, ...) keeps its mode; everything is restored on exit.
    """
    changed = train_mode_norm_layers(model) if enabled else []
    for m in changed:
        m.train(False)
    try:
        yield
    finally:
        for m in changed:
            m.train(True)


def zeros_like_missing(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    """Replace ``None`` gradients (parameters the loss does not use) by zeros."""
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, like)]
