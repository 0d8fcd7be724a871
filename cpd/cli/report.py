"""``cpd report``: show a finished run again, or the numbers of a saved model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from cpd.cli.common import console, print_json
from cpd.cli.parser import CliError, HelpFormatter

__all__ = ["register", "run"]

EPILOG = """\
examples:
  cpd report cpd-digits            (a folder written by 'cpd run' or 'cpd demo')
  cpd report cpd-digits --json
  cpd report vit-pruned            (a folder written by 'cpd prune --out')

A run folder (it holds report.json): prints the before/after table and rewrites
report.md and the PNG plots (metric vs MACs, layer widths from model/plan.json,
latency) from report.json; nothing is re-measured. --json prints report.json.

A model folder (it holds cpd.json): prints its source, example input, MACs and
parameters before and after, recorded metrics and what each pruning removed, from
cpd.json and the plan files; the model is not built. --json prints the same as JSON.
"""

_REQUIRED = ("metric", "baseline", "pruned", "history")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report", parents=[parent], formatter_class=HelpFormatter, epilog=EPILOG,
        help="print a finished run's report again (and re-render it), or a saved model's numbers",
        description="Print the report of a run folder (and regenerate report.md and the plots from "
                    "report.json), or the numbers of a saved cpd model folder.")
    p.add_argument("path", metavar="RUN_OR_MODEL_FOLDER",
                   help="a folder written by 'cpd run' / 'cpd demo', or a cpd model folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables; writes nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cpd.io.folder_format import META_FILE, is_cpd_folder

    path = Path(args.path)
    if (path / "report.json").is_file():
        return _run_folder(path, args.json)
    if is_cpd_folder(path):
        return _model_folder(path, args.json)
    what = "does not exist" if not path.exists() else f"has neither report.json (a run) nor {META_FILE} (a model)"
    raise CliError(f"{path} {what}; give a folder written by 'cpd run', 'cpd demo' or 'cpd prune --out'")


def _read_summary(path: Path) -> dict[str, Any]:
    file = path / "report.json"
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CliError(f"{file} is not valid JSON: {e}") from e
    missing = [k for k in _REQUIRED if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise CliError(f"{file} is not a cpd run report: it lacks {', '.join(missing)}")
    return summary


def _run_folder(path: Path, as_json: bool) -> int:
    from cpd.pipeline.report import render_report
    from cpd.plan.plan import Plan

    summary = _read_summary(path)
    if as_json:
        print_json(summary)
        return 0
    plan_file = path / "model" / "plan.json"
    plan = Plan.from_json(json.loads(plan_file.read_text(encoding="utf-8"))) if plan_file.is_file() else None
    out = console()
    title = summary.get("title") or f"cpd report: {path.name}"
    out.print(escape(title))
    render_report(path, summary, title=title, plan=plan, console=out)
    made = "report.md, metric_vs_macs.png, " + ("widths.png, " if plan else "") + "latency.png"
    out.print(escape(f"rewrote {path}/ ({made}) from report.json"))
    return 0


def _model_info(path: Path) -> dict[str, Any]:
    from cpd.io.folder_format import read_meta, read_plan_json
    from cpd.plan.plan import Plan

    meta = read_meta(path)
    plans = []
    for name in meta.get("plans", []):
        plan = Plan.from_json(read_plan_json(path, name))
        plans.append({"file": name, "groups_pruned": len(plan.keep), "channels_removed": plan.removed(),
                      "importance": plan.meta.get("importance"),
                      "rolled_back": plan.meta.get("rolled_back", [])})
    return {"folder": str(path), "source": meta.get("source"), "input": meta.get("input"),
            "counts": meta.get("counts", {}), "metrics": meta.get("metrics", {}), "plans": plans,
            "cpd_version": meta.get("cpd_version")}


def _model_folder(path: Path, as_json: bool) -> int:
    from cpd.io.card import human, percent_change

    info = _model_info(path)
    if as_json:
        print_json(info)
        return 0
    out = console()
    shape = tuple(info["input"].get("shape", ())) if isinstance(info["input"], dict) else "?"
    out.print(escape(f"{path}: pruned from {info['source']} (input {shape}, cpd {info['cpd_version']})"))
    table = Table()
    for col in ("", "before", "after", "change"):
        table.add_column(col, justify="left" if not col else "right")
    for name in ("macs", "params"):
        before, after = (list(info["counts"].get(name) or []) + [None, None])[:2]
        table.add_row("MACs" if name == "macs" else "params", human(before), human(after),
                      percent_change(before, after))
    for name, value in info["metrics"].items():
        table.add_row(escape(str(name)), "", f"{value:.4g}" if isinstance(value, float) else str(value), "")
    out.print(table)
    for i, p in enumerate(info["plans"], 1):
        out.print(escape(f"pruning {i} ({p['file']}): {p['groups_pruned']} groups, "
                         f"{p['channels_removed']} channels removed, criterion {p['importance']}, "
                         f"rolled back: {p['rolled_back'] or 'none'}"))
    return 0
