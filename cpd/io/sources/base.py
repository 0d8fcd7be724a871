"""The model-source registry: one builder per scheme (``hf``, ``timm``, ``py``...).

A *source* turns a parsed model string (:class:`~cpd.io.spec.ModelSpec`) into a
:class:`LoadedModel`: the ``nn.Module`` in eval mode plus what is needed to call it
(an :class:`~cpd.io.inputs.InputSpec`) and to rebuild it later (the source string).
New schemes register with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from cpd.io.errors import ModelSourceError
from cpd.io.inputs import InputSpec
from cpd.io.spec import ModelSpec, parse_model_string
from cpd.plan.plan import Plan

__all__ = ["LoadedModel", "Source", "build_source", "check_module", "register_source", "sources", "valid_forms"]

#: ``build(spec, from_folder=...)``; ``from_folder`` is True when the string was
#: read from a saved folder rather than typed by the user (see the ``py:`` source).
Builder = Callable[..., "LoadedModel"]


@dataclass
class LoadedModel:
    """A model and everything needed to run, re-save and rebuild it.

    Attributes:
        model: the module, in eval mode.
        inputs: shape and form of its example input.
        source: the model string that builds the *original* architecture (never a
            folder): what a saved folder records.
        plans: plans already applied to the original, in order (empty for a model
            built straight from a source; a cpd folder's plans otherwise).
        folder: the cpd folder it was loaded from, if any.
        meta: the folder's ``cpd.json`` (empty for a source).
    """

    model: nn.Module
    inputs: InputSpec
    source: str
    plans: list[Plan] = field(default_factory=list)
    folder: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def example_inputs(self, seed: int = 0) -> Any:
        """A reproducible example input: ``(B, C, H, W)`` tensor or ``{"pixel_values": x}``."""
        return self.inputs.make(seed)


@dataclass(frozen=True)
class Source:
    """A registered scheme.

    Attributes:
        scheme: the prefix before ``:``.
        build: ``build(spec, from_folder=False) -> LoadedModel``.
        usage: the accepted forms, for help and error messages.
    """

    scheme: str
    build: Builder
    usage: tuple[str, ...]


_SOURCES: dict[str, Source] = {}


def register_source(scheme: str, build: Builder, usage: tuple[str, ...] | str) -> None:
    """Register ``build`` for ``scheme:`` strings (replacing an earlier registration)."""
    usage = (usage,) if isinstance(usage, str) else tuple(usage)
    _SOURCES[scheme.lower()] = Source(scheme.lower(), build, usage)


def sources() -> list[Source]:
    """Registered sources, in registration order."""
    return list(_SOURCES.values())


def valid_forms() -> str:
    """One line listing every accepted form, for error messages."""
    forms = [u for s in _SOURCES.values() for u in s.usage]
    return ", ".join(forms + ["or a folder saved by cpd"])


def build_source(text: str | ModelSpec, *, from_folder: bool = False) -> LoadedModel:
    """Build the model a ``scheme:target?options`` string names.

    Raises:
        ModelSourceError: malformed string, unknown scheme, or a target the scheme
            cannot build (the message lists the valid forms where that helps).
        MissingDependencyError: the scheme's package is not installed.
    """
    spec = text if isinstance(text, ModelSpec) else parse_model_string(text, valid_forms())
    source = _SOURCES.get(spec.scheme)
    if source is None:
        raise ModelSourceError(f"unknown model scheme {spec.scheme + ':'!r} in {spec.raw!r}; "
                               f"valid forms: {valid_forms()}")
    return source.build(spec, from_folder=from_folder)


def check_module(obj: Any, what: str) -> nn.Module:
    """``obj`` if it is an ``nn.Module``; a one-line error naming ``what`` otherwise."""
    if not isinstance(obj, nn.Module):
        raise ModelSourceError(f"{what} returned {type(obj).__name__}, not a torch.nn.Module")
    return obj
