"""Reading a ``cpd run`` config: YAML file, ``--set`` overrides, key and type checks.

Every problem is one :class:`ConfigError` line naming the file (or the ``--set``)
and the dotted key: an unknown key gets the closest valid one (``train.lrr`` ->
"did you mean train.lr?"), a wrong type says what was expected. Values are
checked against the dataclass field types of :mod:`cpd.config.schema`; a number
written ``1e-3`` (a string to YAML 1.1) is accepted where a float is expected.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from cpd.config.schema import SECTIONS, TARGETS, RunConfig
from cpd.io.errors import CpdInputError

__all__ = ["ConfigError", "config_from_dict", "dump_config", "load_config", "parse_override"]


class ConfigError(CpdInputError):
    """A config file or ``--set`` that cannot be used (one line, says what to change)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a mapping", type(None): "null"}
    return names.get(origin or hint, str(hint))


def check_value(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to ``hint`` (int -> float, ``"1e-3"`` -> float), or ``ValueError``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_value(value, arg, key)
            except ValueError:
                pass
    elif hint is bool and isinstance(value, bool) or hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif hint is str and isinstance(value, str):
        return value
    elif origin is list and isinstance(value, (list, tuple)):
        return [check_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise ValueError(f"{key} must be {_describe(hint)}, got {value!r}")


def _keys(section: str) -> list[str]:
    return [f.name for f in dataclasses.fields(SECTIONS[section])]


def _unknown(dotted: str) -> str:
    """``unknown key X; did you mean Y?`` with the closest key of the same section, else any."""
    parts = dotted.split(".")
    if len(parts) == 1:
        close = get_close_matches(parts[0], list(SECTIONS), n=1, cutoff=0.6)
        close += [f"{s}.{parts[0]}" for s in SECTIONS if parts[0] in _keys(s)]
        valid = f"sections are {', '.join(SECTIONS)}"
        kind = "section"
    else:
        section, leaf = parts[0], parts[1]
        close = [f"{section}.{k}" for k in get_close_matches(leaf, _keys(section), n=1, cutoff=0.6)]
        if not close:  # the right key in the wrong section, e.g. prune.lr
            everywhere = [f"{s}.{k}" for s in SECTIONS for k in _keys(s)]
            close = [d for d in everywhere if d.split(".")[1] == leaf]
            close = close or get_close_matches(dotted, everywhere, n=1, cutoff=0.75)
        valid = f"valid keys of {section}: {', '.join(_keys(section))}"
        kind = "key"
    hint = f"did you mean {' or '.join(close)}?" if close else valid
    return f"unknown {kind} {dotted}; {hint}"


def _section_mapping(raw: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Check the two-level shape and the key names; returns a deep-enough copy."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{where}: {_unknown(str(name))}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: section {name} must be a mapping of keys, got {values!r}")
        for key in values:
            if key not in _keys(name):
                raise ConfigError(f"{where}: {_unknown(f'{name}.{key}')}")
        out[name] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in values.items()}
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=5e-4"`` -> ``(["train", "lr"], 0.0005)``; the value is read as YAML."""
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise ConfigError(f"bad --set {text!r}: expected KEY=VALUE with a dotted key, "
                          "e.g. --set train.lr=0.0005")
    try:
        parsed = yaml.load(value, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"bad --set {text!r}: the value is not valid YAML "
                          f"({str(e).splitlines()[0]})") from e
    return path, parsed


def _apply(sections: dict[str, dict[str, Any]], text: str) -> str:
    """Apply one ``--set`` in place; returns the ``section.key`` it set."""
    path, value = parse_override(text)
    where = f"--set {text}"
    if path[0] not in SECTIONS:
        raise ConfigError(f"{where}: {_unknown(path[0])}")
    if len(path) == 1:
        raise ConfigError(f"{where}: name a key inside the section, e.g. "
                          f"--set {path[0]}.{_keys(path[0])[0]}=VALUE")
    section, key = path[0], path[1]
    if key not in _keys(section):
        raise ConfigError(f"{where}: {_unknown(f'{section}.{key}')}")
    values = sections.setdefault(section, {})
    if len(path) == 2:
        values[key] = value
        return f"{section}.{key}"
    if get_origin(_hints(SECTIONS[section])[key]) is not dict:
        raise ConfigError(f"{where}: {section}.{key} is not a mapping; use --set {section}.{key}=VALUE")
    node = values.get(key)
    node = values[key] = dict(node) if isinstance(node, Mapping) else {}
    for part in path[2:-1]:  # nested options, e.g. data.options.size=16
        node[part] = dict(node[part]) if isinstance(node.get(part), Mapping) else {}
        node = node[part]
    node[path[-1]] = value
    return f"{section}.{key}"


def _build(sections: dict[str, dict[str, Any]], explicit: set[str], where: str) -> RunConfig:
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = dict(sections.get(name, {}))
        try:
            kwargs = {k: check_value(v, _hints(cls)[k], f"{name}.{k}") for k, v in values.items()}
            if name == "prune" and any(f"prune.{t}" in explicit for t in TARGETS):
                # A target the user gave replaces the default one (macs=0.5).
                kwargs.update({t: None for t in TARGETS if f"prune.{t}" not in explicit})
            obj = cls(**kwargs)
            for f in dataclasses.fields(cls):
                if f.metadata.get("required") and getattr(obj, f.name) is None:
                    example = f.metadata.get("example")
                    raise ValueError(f"{name}.{f.name} is required, e.g. {f.name}: {example}")
            if hasattr(obj, "check"):
                obj.check()
        except ValueError as e:
            # TrainConfig's own checks say "TrainConfig: x ..."; the user wrote train.x.
            message = str(e).replace("TrainConfig: ", "train.", 1)
            raise ConfigError(f"{where}: {message}") from e
        built[name] = obj
    return RunConfig(**built)


def config_from_dict(raw: Mapping[str, Any] | None, overrides: Sequence[str] = (), *,
                     where: str = "config") -> RunConfig:
    """Validate ``{section: {key: value}}``, apply ``--set`` overrides, build the config.

    Args:
        raw: the parsed YAML (``None`` for an empty file).
        overrides: ``"section.key=value"`` strings, applied in order.
        where: names the source in error messages (the file path).

    Raises:
        ConfigError: unknown key (with the closest valid one), wrong type, bad value.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections ({', '.join(SECTIONS)}), "
                          f"got {type(raw).__name__}")
    sections = _section_mapping(raw, where)
    explicit = {f"{s}.{k}" for s, values in sections.items() for k in values}
    explicit |= {_apply(sections, text) for text in overrides}
    return _build(sections, explicit, where)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file and apply ``--set`` overrides.

    Raises:
        ConfigError: missing or unreadable file, invalid YAML, and everything
            :func:`config_from_dict` rejects.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}; 'cpd run --example > cpd-run.yaml' writes "
                          "a commented one to start from")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{at}: {problem}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a text file ({e.reason})") from e
    return config_from_dict(raw, overrides, where=str(path))


def dump_config(config: RunConfig) -> str:
    """The config as YAML (every key, resolved); :func:`load_config` reads it back."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
