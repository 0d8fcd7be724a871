"""The ``cpd run`` config: schema, YAML loading, ``--set``, errors, example file, README."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from cpd.config import (
    ConfigError,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)
from cpd.config.example import render_example, train_help
from cpd.config.schema import SECTIONS, RunConfig
from cpd.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"model": {"source": "py:cli_models:tiny_cnn"}, "data": {"name": "digits"}}


def _error(raw: dict | None, overrides: list[str] = ()) -> str:  # type: ignore[assignment]
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw, overrides, where="c.yaml")
    message = str(e.value)
    assert "\n" not in message
    return message


def test_example_file_is_the_rendered_schema_and_loads() -> None:
    text = render_example()
    assert (ROOT / "examples" / "cpd-run.yaml").read_text() == text
    config = config_from_dict(yaml.safe_load(text))
    assert config.model.source and config.data.name == "camvid"
    for section, cls in SECTIONS.items():  # every key is written out with a comment above it
        lines = text.split(f"\n{section}:", 1)[1].split("\n\n", 1)[0].splitlines()
        for f in dataclasses.fields(cls):
            i = next(i for i, line in enumerate(lines) if line.startswith(f"  {f.name}: "))
            assert lines[i - 1].startswith("  # "), f"{section}.{f.name} has no comment"


def test_train_section_is_trainconfig_with_its_own_comments() -> None:
    assert SECTIONS["train"] is TrainConfig
    helps = train_help()
    assert set(helps) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert "see cpd.train.TrainConfig" not in helps.values()  # each read from its source line
    assert helps["lr"].startswith("peak learning rate")


def test_defaults_round_trip_and_dump() -> None:
    config = config_from_dict(MINIMAL)
    assert config.prune.target() == ("macs", 0.5) and config.train == TrainConfig()
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict(yaml.safe_load(dump_config(config))) == config


def test_yaml_file_types_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {source: 'py:cli_models:tiny_cnn'}\ndata: {name: digits, options: {size: 8}}\n"
                    "train:\n  lr: 1e-3\n  max_steps: 7\nprune: {score_batches: 2}\n")
    config = load_config(path, ["train.lr=5e-4", "data.options.channels=3", "prune.score_batches=null",
                                "report.latency_batch_sizes=[2, 4]", "train.lr=0.002"])
    assert config.train.lr == 0.002 and isinstance(config.train.lr, float)  # later --set wins
    assert config.train.max_steps == 7 and config.prune.score_batches is None
    assert config.data.options == {"size": 8, "channels": 3}
    assert config.report.latency_batch_sizes == [2, 4]


def test_a_given_target_replaces_the_default_one() -> None:
    assert config_from_dict(MINIMAL, ["prune.latency=0.6"]).prune.target() == ("latency", 0.6)
    assert config_from_dict({**MINIMAL, "prune": {"ratio": 0.3}}).prune.target() == ("ratio", 0.3)
    message = _error({**MINIMAL, "prune": {"macs": 0.5}}, ["prune.latency=0.5"])
    assert "give exactly one of" in message and "--set prune.macs=null" in message


@pytest.mark.parametrize("raw,overrides,needle", [
    ({**MINIMAL, "trian": {}}, [], "unknown section trian; did you mean train?"),
    ({**MINIMAL, "train": {"lrr": 0.1}}, [], "unknown key train.lrr; did you mean train.lr?"),
    ({**MINIMAL, "prune": {"lr": 0.1}}, [], "unknown key prune.lr; did you mean pretrain.lr or train.lr?"),
    ({**MINIMAL, "lr": 0.1}, [], "unknown section lr; did you mean pretrain.lr or train.lr?"),
    (MINIMAL, ["train.lrr=0.1"], "--set train.lrr=0.1: unknown key train.lrr; did you mean train.lr?"),
    (MINIMAL, ["train.lr"], "bad --set 'train.lr': expected KEY=VALUE"),
    (MINIMAL, ["train.lr=[1"], "the value is not valid YAML"),
    (MINIMAL, ["train.lr=abc"], "train.lr must be a number, got 'abc'"),
    (MINIMAL, ["train.lr.x=1"], "train.lr is not a mapping"),
    (MINIMAL, ["prune=1"], "name a key inside the section"),
    (MINIMAL, ["train.max_steps=1.5"], "train.max_steps must be an integer or null, got 1.5"),
    (MINIMAL, ["report.latency_batch_sizes=[1, a]"], "report.latency_batch_sizes[1] must be an integer"),
    (MINIMAL, ["export.onnx=maybe"], "export.onnx must be true or false"),
    (MINIMAL, ["train.optimizer=adam"], "train.optimizer must be one of"),
    (MINIMAL, ["data.name=digit"], "unknown dataset 'digit'; did you mean digits?"),
    (MINIMAL, ["prune.importance=biggest"], "prune.importance must be one of"),
    (MINIMAL, ["prune.macs=1.5"], "prune.macs is a fraction of the original"),
    ({"data": {"name": "digits"}}, [], "model.source is required"),
    ({**MINIMAL, "train": [1, 2]}, [], "section train must be a mapping"),
    ([1, 2], [], "expected a mapping of sections"),
])
def test_errors_name_the_key(raw: object, overrides: list[str], needle: str) -> None:
    assert needle in _error(raw, overrides)  # type: ignore[arg-type]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; 'cpd run --example"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  source: x\n  source: y\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3.*duplicate key 'source'"):
        load_config(bad)
    bad.write_text("model: [\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        load_config(bad)


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("a.b=5e-4") == (["a", "b"], "5e-4")  # YAML 1.1: a string, checked later
    assert parse_override("a.b=[1, 8]") == (["a", "b"], [1, 8])
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")


def test_readme_documents_every_section_and_key() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section, flags=re.MULTILINE))
    assert set(rows) >= set(SECTIONS)
    for name, cls in SECTIONS.items():
        documented = set(re.findall(r"`(\w+)`", rows[name])) - {"cpd"} - set(SECTIONS)
        keys = {f.name for f in dataclasses.fields(cls)}
        assert keys <= documented, (name, keys - documented)
        assert documented <= keys | {"cpd-run"}, (name, documented - keys)
    for command in ("demo", "run", "comb", "prune", "bench", "export", "eval", "report"):
        assert f"| `cpd {command} " in section
    assert RunConfig().report.out == "cpd-run"


def test_task_options_reach_the_segmentation_task() -> None:
    from cpd.config.datasets import task_for
    from cpd.distill import ChannelKD
    from cpd.io.errors import CpdInputError

    class Frames:
        task, num_classes, ignore_index = "segmentation", 11, 11

    task = task_for(Frames(), None, {"kd_mode": "channel"})  # type: ignore[arg-type]
    assert isinstance(task.kd(), ChannelKD) and task.kd().ignore_index == 11
    with pytest.raises(CpdInputError, match="kd_mode must be one of"):
        task_for(Frames(), None, {"kd_mode": "pixels"})  # type: ignore[arg-type]


def test_the_teacher_pretrains_without_the_distillation_knobs(tmp_path: Path) -> None:
    """``pretrain`` trains the teacher on the task loss alone: KD, feature KD and the extra
    view of the ``train`` section belong to the compression run (a classification view
    without a teacher could not even be labelled)."""
    from cpd.config.runner import _pretrain_config, _train_config

    config = config_from_dict(MINIMAL, ["train.extra_view=cutmix", "train.alpha=0.7", "pretrain.steps=10"], where="c.yaml")
    pre, train = _pretrain_config(config), _train_config(config, tmp_path)
    assert (pre.extra_view, pre.alpha, pre.feature_layers) == ("none", 0.0, [])
    assert (train.extra_view, train.alpha) == ("cutmix", 0.7)
