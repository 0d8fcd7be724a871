"""A model's modules and integer attributes, read once per comb.

Binding resolution (:mod:`cpd.groups.bindings`) runs several times per comb and each
run reads ``named_modules()`` and every module's int attributes; the model does not
change meanwhile (the rehearsal changes fake copies only), so inside
:func:`scanned` those reads are shared.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch.nn as nn


class _Scan:
    """``named_modules()`` and int attributes of one model, read once per comb: the
    bindings are resolved several times per comb, and the model does not change
    meanwhile (the rehearsal changes fake copies only)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.mods = dict(model.named_modules())
        own = [*self.mods.values(), *(getattr(m, "config", None) for m in self.mods.values())]
        self._own = {id(o) for o in own if o is not None}
        self._ints: dict[int, dict[str, object]] = {}

    def ints(self, obj: object) -> dict[str, object]:
        if id(obj) not in self._own:  # a fake copy's module: it does change
            return _int_attrs(obj)
        got = self._ints.get(id(obj))
        if got is None:
            got = self._ints[id(obj)] = _int_attrs(obj)
        return got


_ACTIVE: ContextVar[_Scan | None] = ContextVar("cpd_bindings_scan", default=None)


@contextmanager
def scanned(model: nn.Module) -> Iterator[None]:
    """Within this block, :func:`modules` and :func:`int_attrs` of ``model`` are read
    once and reused; the model must not change inside it."""
    token = _ACTIVE.set(_Scan(model))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def modules(model: nn.Module) -> dict[str, nn.Module]:
    """``dict(model.named_modules())`` (shared inside :func:`scanned`: do not modify)."""
    scan = _ACTIVE.get()
    return scan.mods if scan is not None and scan.model is model else dict(model.named_modules())


def int_attrs(m: object) -> dict[str, object]:
    """A module's (or config's) int and small int-tuple attributes (bools excluded);
    read-only (shared inside :func:`scanned`)."""
    scan = _ACTIVE.get()
    return scan.ints(m) if scan is not None else _int_attrs(m)


def _int_attrs(m: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in vars(m).items():
        if k.startswith("_") or isinstance(v, bool):
            continue
        if isinstance(v, int) and v > 1:
            out[k] = v
        elif (isinstance(v, (tuple, list)) and v and len(v) <= 8
              and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
            out[k] = v
    return out
