"""Forward hooks that capture the outputs of chosen layers in a student and its teacher.

Feature KD compares a student layer's output with the same layer's output in the
unpruned teacher, at the teacher channels the student kept
(:func:`~cpd.distill.feature_kd_loss`). :class:`FeatureTaps` collects both during
one training step and hands out the ``(student, teacher, kept, dim)`` tuples::

    taps = FeatureTaps(["layer1.0.conv1", "layer2.0.bn2"], teacher, student)
    taps.set_kept(kept_channels(plan, teacher, taps.layers))   # after each pruning step
    with taps.capture():                   # hooks record only inside this block
        with torch.no_grad():
            t_out = teacher(x)
        s_out = student(x)
        loss = task_loss(s_out, y) + feature_weight * taps.loss()

Capturing only inside :meth:`FeatureTaps.capture` keeps the hooks silent during
evaluation and during the extra forwards of pruning criteria (which may run under
``torch.func.vmap``); leaving the block drops the captured tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from difflib import get_close_matches
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cpd.distill.feature_axes import feature_axis
from cpd.distill.feature_kd import FeaturePair, mean_feature_kd

__all__ = ["FeatureTaps", "check_feature_layers", "first_tensor"]


def first_tensor(output: Any) -> Tensor | None:
    """The first tensor of a module output: itself, or the first of a tuple / list /
    dict / Hugging Face ``ModelOutput`` (depth first), or None."""
    if isinstance(output, Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    for value in values:
        found = first_tensor(value)
        if found is not None:
            return found
    return None


def check_feature_layers(model: nn.Module, layers: Sequence[str], what: str = "model") -> dict[str, nn.Module]:
    """``{name: module}`` for ``layers``; a one-line ValueError for an unknown name (with the
    closest existing names) or a module type whose channel axis is not registered."""
    modules = dict(model.named_modules())
    found: dict[str, nn.Module] = {}
    for name in layers:
        if name not in modules:
            close = get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else \
                f"some modules: {', '.join([n for n in modules if n][:6])}"
            raise ValueError(f"feature_layers: {name!r} is not a module of the {what} "
                             f"(names as in model.named_modules()); {hint}")
        if feature_axis(modules[name]) is None:
            raise ValueError(f"feature_layers: {name!r} is a {type(modules[name]).__name__}, whose output "
                             "channels cpd does not know; tap a conv, linear or norm layer inside it, or "
                             "declare the type with cpd.distill.register_feature_axis")
        found[name] = modules[name]
    return found


class FeatureTaps:
    """Capture the outputs of ``layers`` in a teacher and a student, for feature KD.

    Args:
        layers: module names as in the ORIGINAL (teacher) model's ``named_modules()``;
            pruning keeps module names, so the same names address the student.
        teacher: the frozen teacher; hooks stay on it until :meth:`remove`.
        student: optional; :meth:`attach` moves the student hooks to a new student
            (e.g. after physical pruning replaced the model).

    Attributes:
        layers: the tapped names, in order.
        dims: layer -> channel axis of its output (from the module type).
        kept: layer -> teacher channel indices the student kept (LongTensor), or None
            for all of them (the state before any pruning).
    """

    def __init__(self, layers: Sequence[str], teacher: nn.Module, student: nn.Module | None = None) -> None:
        if isinstance(layers, str) or not layers:
            raise ValueError(f"feature_layers must be a non-empty list of module names, got {layers!r}")
        self.layers = list(layers)
        teacher_modules = check_feature_layers(teacher, self.layers, "teacher")
        self.dims: dict[str, int] = {n: feature_axis(m).dim for n, m in teacher_modules.items()}  # type: ignore[union-attr]
        self.kept: dict[str, Tensor | None] = dict.fromkeys(self.layers)
        self._active = False
        self._teacher: dict[str, Tensor] = {}
        self._student: dict[str, Tensor] = {}
        self._teacher_hooks = self._hook_all(teacher_modules, self._teacher)
        self._student_hooks: list[RemovableHandle] = []
        if student is not None:
            self.attach(student)

    def _hook_all(self, modules: dict[str, nn.Module], store: dict[str, Tensor]) -> list[RemovableHandle]:
        def make(name: str) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if self._active:  # a module run twice in one forward: its last output counts
                    tensor = first_tensor(output)
                    if tensor is not None:
                        store[name] = tensor
            return hook
        return [m.register_forward_hook(make(n)) for n, m in modules.items()]

    def attach(self, student: nn.Module) -> None:
        """Tap ``student`` (replacing the hooks on a previous student); ``kept`` is unchanged."""
        modules = check_feature_layers(student, self.layers, "student")
        for name, module in modules.items():
            if feature_axis(module).dim != self.dims[name]:  # type: ignore[union-attr]
                raise ValueError(f"feature_layers: {name!r} is a {type(module).__name__} in the student but its "
                                 "channel axis differs from the teacher's; tap the same architecture")
        for handle in self._student_hooks:
            handle.remove()
        self._student_hooks = self._hook_all(modules, self._student)

    def set_kept(self, kept: Mapping[str, Tensor | Sequence[int] | None]) -> None:
        """Set the kept teacher channels of some layers (e.g. from
        :func:`~cpd.distill.kept_channels`); ``None`` means all channels."""
        unknown = sorted(set(kept) - set(self.layers))
        if unknown:
            raise ValueError(f"set_kept: {unknown} are not tapped layers; tapped: {self.layers}")
        for name, idx in kept.items():
            self.kept[name] = None if idx is None else torch.as_tensor(idx, dtype=torch.long).flatten().cpu()

    @contextmanager
    def capture(self) -> Iterator[FeatureTaps]:
        """Record the tapped outputs of the forwards run inside this block; dropped on exit."""
        self.clear()
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            self.clear()

    def clear(self) -> None:
        """Drop the captured tensors."""
        self._teacher.clear()
        self._student.clear()

    def pairs(self) -> list[FeaturePair]:
        """``(student_feat, teacher_feat, kept, dim)`` per layer, for this capture's forwards.

        Shapes: ``(B, C_s, ...)`` / ``(B, C_t, ...)`` for ``dim=1``, ``(..., D_s)`` /
        ``(..., D_t)`` for ``dim=-1``; ``C_s`` is ``len(kept)`` (pruned student) or
        ``C_t`` (masked student, sliced by :func:`~cpd.distill.feature_kd_loss`).
        """
        missing = [n for n in self.layers if n not in self._student or n not in self._teacher]
        if missing:
            raise RuntimeError(f"feature taps captured no output of {missing} in the student and teacher "
                               "forwards; run both inside taps.capture() (and check that those layers run)")
        return [(self._student[n], self._teacher[n], self.kept[n], self.dims[n]) for n in self.layers]

    def loss(self) -> Tensor:
        """Mean feature KD over the tapped layers (a scalar, differentiable in the student)."""
        return mean_feature_kd(self.pairs())

    def remove(self) -> None:
        """Remove every hook (teacher and student)."""
        for handle in self._teacher_hooks + self._student_hooks:
            handle.remove()
        self._teacher_hooks, self._student_hooks = [], []
        self.clear()
