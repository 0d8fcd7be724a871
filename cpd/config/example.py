"""The commented example config, rendered from the schema (``cpd run --example``).

Every key of every section appears with its default (required keys with an
example value) and its help text: the section dataclasses' ``metadata["help"]``,
and for ``train`` the field comments of :class:`cpd.train.TrainConfig` itself, so
the file documents exactly the keys that exist. ``examples/cpd-run.yaml`` is
this text (a test keeps the two identical).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import textwrap
from functools import cache
from typing import Any

import yaml

from cpd.config.schema import SECTIONS
from cpd.train.config import TrainConfig

__all__ = ["field_help", "render_example", "train_help"]

HEADER = """\
# cpd run configuration: every key, with its default.
#
#   cpd run CONFIG.yaml [--set section.key=value ...]
#
# runs Comb, Prune, Distill end to end: build or load the model, optionally train it
# (pretrain), prune it inside training with the original as the frozen teacher, fine-tune
# with distillation, evaluate, export to ONNX, and write a report to report.out.
# Unknown keys are errors. --set takes dotted keys and YAML values
# (--set train.lr=5e-4 --set data.options.size=32 --set prune.score_batches=null).
# A small runnable config: examples/digits-demo.yaml.
"""

#: Where ``cpd run`` gives a TrainConfig field a meaning of its own.
_TRAIN_NOTES = {
    "out_dir": "run folder: log.jsonl, config.json, checkpoints/; null: report.out/run",
    "max_steps": "total optimizer steps (pruning and fine-tuning); overrides epochs when not "
                 "null; must reach past the last pruning step, prune.start + prune.steps * "
                 "prune.interval",
}
_WIDTH = 92


@cache
def train_help() -> dict[str, str]:
    """Help per :class:`TrainConfig` field, read from the comment on its line in the source."""
    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):  # no source shipped (a zipped install): point at the class
        source = ""
    found = dict(re.findall(r"^    (\w+): [^#\n]*?#\s*(.+)$", source, flags=re.MULTILINE))
    out = {}
    for f in dataclasses.fields(TrainConfig):
        text = _TRAIN_NOTES.get(f.name) or found.get(f.name) or "see cpd.train.TrainConfig"
        out[f.name] = re.sub(r"\bNone\b", "null", text)  # YAML spells it null
    return out


def field_help(section: str, key: str) -> str:
    """The help text of ``section.key``."""
    if section == "train":
        return train_help()[key]
    f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
    return str(f.metadata["help"])


def _scalar(value: Any) -> str:
    """A YAML flow value: bare where YAML reads it back unchanged, else JSON (valid YAML)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        plain = value.strip() == value and not re.search(r"[:#{}\[\],&*!|>'\"%@`?]", value)
        return value if plain and value and yaml.safe_load(value) == value else json.dumps(value)
    # numbers, lists, mappings: one flow-style line (safe_dump ends a bare scalar with "...")
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _value(f: dataclasses.Field[Any]) -> Any:
    if "example" in f.metadata:
        return f.metadata["example"]
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def render_example() -> str:
    """The commented YAML config (loads with :func:`cpd.config.load.config_from_dict`)."""
    lines = [HEADER]
    for name, cls in SECTIONS.items():
        doc = "cpd.train.TrainConfig, key for key" if cls is TrainConfig else \
            (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(f"{name}:  # {doc}")
        for f in dataclasses.fields(cls):
            text = field_help(name, f.name)
            if f.metadata.get("required"):
                text = f"required: {text}"
            elif "example" in f.metadata:
                text = f"{text} (default: {_scalar(f.default)})"
            lines += textwrap.wrap(text, _WIDTH, initial_indent="  # ", subsequent_indent="  # ",
                                   break_on_hyphens=False)
            lines.append(f"  {f.name}: {_scalar(_value(f))}")
        lines.append("")
    return "\n".join(lines)
