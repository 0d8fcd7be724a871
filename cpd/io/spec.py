"""Parsing model strings (``scheme:target?key=value&...``) and ``--input-shape``.

Syntax of a model string::

    SCHEME:TARGET[?KEY=VALUE[&KEY=VALUE...]]

* ``SCHEME`` is a registered source (``hf``, ``timm``, ``torchvision``, ``py``).
* ``TARGET`` is what the scheme builds (a model type, a model name, a folder,
  ``package.module:factory``).
* Options after ``?`` are keyword arguments (config overrides for ``hf:``, model
  kwargs for ``timm:`` / ``torchvision:`` / ``py:``). Each value is read as JSON
  when it parses (``64`` -> int, ``0.1`` -> float, ``true`` -> bool, ``null`` ->
  None, ``[1,1,2]`` -> list, ``"7"`` -> str), else taken as a plain string;
  ``True``/``False``/``None`` are accepted too. Values are percent-decoded, so
  ``%26`` writes a literal ``&``.

Example: ``hf:vit?hidden_size=32&num_hidden_layers=2&image_size=64``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cpd.io.errors import CpdInputError, ModelSourceError

__all__ = ["ModelSpec", "format_options", "parse_model_string", "parse_options", "parse_shape"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_+.-]*):(.*)$", re.S)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PY_LITERALS = {"True": True, "False": False, "None": None}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model string.

    Attributes:
        scheme: lower-cased scheme (``"hf"``).
        target: the part between ``scheme:`` and ``?``.
        options: decoded ``key=value`` options, in the order given.
        raw: the string as the user wrote it (what a saved folder records).
    """

    scheme: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)
    raw: str = ""


def parse_value(text: str) -> Any:
    """One option value: JSON when it parses, Python's True/False/None, else the string."""
    if text in _PY_LITERALS:
        return _PY_LITERALS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(query: str, where: str) -> dict[str, Any]:
    """``"a=1&b=x"`` -> ``{"a": 1, "b": "x"}``; ``where`` names the string in errors."""
    out: dict[str, Any] = {}
    if not query:
        return out
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = unquote(key).strip()
        if not eq or not _KEY.match(key):
            raise ModelSourceError(f"bad option {part!r} in {where!r}: options are key=value pairs "
                                   "joined by '&', e.g. ?num_labels=10&image_size=64")
        if key in out:
            raise ModelSourceError(f"option {key!r} given twice in {where!r}")
        out[key] = parse_value(unquote(value))
    return out


def format_options(options: dict[str, Any]) -> str:
    """Inverse of :func:`parse_options` for JSON-able values (``""`` when empty)."""
    if not options:
        return ""
    parts = [f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
             for k, v in options.items()]
    return "?" + "&".join(parts)


def parse_model_string(text: str, valid_forms: str = "") -> ModelSpec:
    """Split ``scheme:target?options`` (the scheme is not checked against the registry).

    Raises:
        ModelSourceError: empty string or no ``scheme:`` prefix; ``valid_forms``
            (one line) is appended to say what would have worked.
    """
    hint = f"; valid forms: {valid_forms}" if valid_forms else ""
    if not text or not text.strip():
        raise ModelSourceError(f"empty model string{hint}")
    m = _SCHEME.match(text.strip())
    # A one-letter "scheme" is a Windows drive (C:\models), never a source.
    if m is None or len(m.group(1)) == 1:
        raise ModelSourceError(f"cannot read model string {text!r}: no such folder, and no scheme "
                               f"prefix{hint}")
    scheme, rest = m.group(1).lower(), m.group(2)
    target, _, query = rest.partition("?")
    if not target:
        raise ModelSourceError(f"model string {text!r} names nothing after '{scheme}:'{hint}")
    return ModelSpec(scheme, target, parse_options(query, text), text)


def parse_shape(text: str, what: str = "--input-shape") -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; ``x`` also separates (``1x3x224x224``).

    Raises:
        CpdInputError: anything but one or more positive integers.
    """
    parts = [p.strip() for p in re.split(r"[,x]", text.strip().strip("()[]"))]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise CpdInputError(f"bad {what} {text!r}: expected positive integers separated by commas, "
                            "e.g. 1,3,224,224")
    return dims
