"""``cpd run`` configs: the schema (plain dataclasses), YAML loading with ``--set``
overrides, the commented example config, and the runner.

Usage::

    from cpd.config import load_config, run_config

    config = load_config("cpd-run.yaml", ["train.lr=5e-4", "prune.macs=0.4"])
    summary = run_config(config)          # writes config.report.out
"""

from cpd.config.load import (
    ConfigError,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)
from cpd.config.schema import RunConfig

__all__ = ["ConfigError", "RunConfig", "config_from_dict", "dump_config", "load_config",
           "parse_override", "render_example", "run_config"]


def __getattr__(name: str) -> object:
    # The runner and the example renderer pull in the trainer, datasets and inspect:
    # imported on first use so that reading a config stays cheap.
    if name == "run_config":
        from cpd.config.runner import run_config

        return run_config
    if name == "render_example":
        from cpd.config.example import render_example

        return render_example
    raise AttributeError(f"module 'cpd.config' has no attribute {name!r}")
