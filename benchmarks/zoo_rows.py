"""Rows of ``zoo.json`` (schema, validation, merging) and the ``zoo.md`` summary.

Part of :mod:`zoo` (which re-exports everything here); see its docstring.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hf_zoo  # noqa: E402  (benchmarks/ is on sys.path; see hf_zoo's docstring)

RESULTS = HERE / "results"
ROW_KEYS = (
    "arch", "task", "tool", "ratio", "ok", "skipped",
    "macs", "params", "trace_s", "prune_s", "error",
)
TOOLS = ("cpd", "torch-pruning")
DEFAULT_RATIOS = (0.3, 0.5)
CPD_MISSING = "cpd.prune not available"
# architectures whose trace time the summary calls out (ResNet-50 and ViT-B/16 are the
# default ResNetConfig / ViTConfig)
TRACE_SPOTLIGHT = (("resnet", "image-classification"), ("vit", "image-classification"))



# --------------------------------------------------------------------------------------
# rows


def make_row(arch: str, task: str, tool: str, ratio: float, **fields: Any) -> dict:
    """One result row with every key of ``ROW_KEYS`` (unknown keys are rejected)."""
    unknown = set(fields) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"unknown row fields {sorted(unknown)}")
    row = {
        "arch": arch, "task": task, "tool": tool, "ratio": float(ratio),
        "ok": False, "skipped": False, "macs": None, "params": None,
        "trace_s": None, "prune_s": None, "error": None,
    }
    row.update(fields)
    return row


def validate_row(row: dict) -> None:
    """Raise ``ValueError`` if ``row`` does not follow the zoo.json schema."""
    if set(row) != set(ROW_KEYS):
        raise ValueError(f"row keys {sorted(row)} != {sorted(ROW_KEYS)}")
    if not isinstance(row["arch"], str) or not isinstance(row["task"], str):
        raise ValueError("arch/task must be strings")
    if row["tool"] not in TOOLS:
        raise ValueError(f"tool {row['tool']!r} not in {TOOLS}")
    if not isinstance(row["ratio"], (int, float)):
        raise ValueError("ratio must be a number")
    for k in ("ok", "skipped"):
        if not isinstance(row[k], bool):
            raise ValueError(f"{k} must be a bool")
    for k in ("macs", "params", "trace_s", "prune_s"):
        if row[k] is not None and not isinstance(row[k], (int, float)):
            raise ValueError(f"{k} must be a number or null")
    if row["error"] is not None and not isinstance(row["error"], str):
        raise ValueError("error must be a string or null")
    if row["ok"] and (row["skipped"] or row["error"]):
        raise ValueError("an ok row has neither skipped nor error")


def row_key(row: dict) -> tuple:
    return (row["arch"], row["task"], row["tool"], round(float(row["ratio"]), 6))


def write_results(path: Path, rows: list[dict], *, merge: bool = True) -> list[dict]:
    """Validate ``rows``, merge them into the rows already at ``path`` (same
    (arch, task, tool, ratio) replaced) and write the JSON atomically. Returns the
    rows written."""
    for r in rows:
        validate_row(r)
    old = hf_zoo.read_rows(path) if merge else []
    merged = hf_zoo.merge_rows(old, rows, key=row_key)
    hf_zoo.write_json_atomic(path, merged)
    return merged


# --------------------------------------------------------------------------------------
# Markdown summary


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r["skipped"]:
        return "skip"
    if r["ok"]:
        return f"OK {r['macs']:.2f}" if r["macs"] is not None else "OK"
    err = r["error"] or ""
    if err == CPD_MISSING:
        return "n/a"
    if err.startswith("timeout"):
        return "timeout"
    return "fail"


def _fmt_s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _min_trace(rows: Iterable[dict]) -> float | None:
    ts = [r["trace_s"] for r in rows if r["trace_s"] is not None]
    return min(ts) if ts else None


def render_markdown(rows: list[dict], meta: dict | None = None) -> str:
    """Per-architecture OK/fail table for every (tool, ratio), trace_s of both tools
    side by side, totals, and the skipped / failing rows with their reasons."""
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    ratios = sorted({float(r["ratio"]) for r in rows})
    by = {row_key(r): r for r in rows}
    pairs: list[tuple[str, str]] = []
    for r in rows:
        if (r["arch"], r["task"]) not in pairs:
            pairs.append((r["arch"], r["task"]))

    out = ["# Zoo benchmark: cpd vs Torch-Pruning on Hugging Face vision models", ""]
    out.append(
        "Every image-classification / semantic-segmentation architecture registered by "
        "the installed transformers, default config, random weights. Cell: `OK m` "
        "(m = MACs fraction of the original), `fail` (error, wrong output shape, or "
        "MACs did not drop), `timeout`, `skip` (cannot build / run unpruned here), `n/a` "
        "(tool not available). trace_s: time to build the dependency structure "
        "(cpd.comb / Torch-Pruning pruner + DependencyGraph), the smallest over ratios."
    )
    if meta:
        out.append("")
        out.append(", ".join(f"{k}: {v}" for k, v in meta.items()))
    out.append("")

    head = ["arch", "task"]
    for t in tools:
        for q in ratios:
            head.append(f"{t} {q:g}")
    for t in tools:
        head.append(f"{t} trace_s")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for arch, task in pairs:
        cells = [arch, "cls" if task == "image-classification" else "seg" if task ==
                 "semantic-segmentation" else task]
        for t in tools:
            for q in ratios:
                cells.append(_cell(by.get((arch, task, t, round(q, 6)))))
        for t in tools:
            cells.append(_fmt_s(_min_trace(
                r for r in rows if (r["arch"], r["task"], r["tool"]) == (arch, task, t))))
        out.append("| " + " | ".join(cells) + " |")

    out += ["", "## Totals", ""]
    out.append("| tool | ratio | OK | fail | skipped | total | mean MACs (OK) | "
               "mean params (OK) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for t in tools:
        for q in ratios:
            rs = [r for r in rows if r["tool"] == t and round(float(r["ratio"]), 6) ==
                  round(q, 6)]
            ok = [r for r in rs if r["ok"]]
            sk = [r for r in rs if r["skipped"]]
            fail = len(rs) - len(ok) - len(sk)
            mm = [r["macs"] for r in ok if r["macs"] is not None]
            pp = [r["params"] for r in ok if r["params"] is not None]
            out.append(
                f"| {t} | {q:g} | {len(ok)} | {fail} | {len(sk)} | {len(rs)} | "
                f"{sum(mm) / len(mm):.3f} | {sum(pp) / len(pp):.3f} |" if mm else
                f"| {t} | {q:g} | {len(ok)} | {fail} | {len(sk)} | {len(rs)} |  |  |"
            )

    out += ["", "## Trace time (ResNet-50 = default ResNetConfig, ViT-B/16 = default "
            "ViTConfig)", ""]
    out.append("| model | " + " | ".join(f"{t} trace_s" for t in tools) + " | " +
               " | ".join(f"{t} prune_s" for t in tools) + " |")
    out.append("|---|" + "---|" * (2 * len(tools)))
    for arch, task in TRACE_SPOTLIGHT:
        rs = [r for r in rows if (r["arch"], r["task"]) == (arch, task)]
        if not rs:
            continue
        name = {"resnet": "ResNet-50", "vit": "ViT-B/16"}.get(arch, arch)
        cells = [name]
        cells += [_fmt_s(_min_trace(r for r in rs if r["tool"] == t)) for t in tools]
        for t in tools:
            ps = [r["prune_s"] for r in rs if r["tool"] == t and r["prune_s"] is not None]
            cells.append(_fmt_s(min(ps)) if ps else "")
        out.append("| " + " | ".join(cells) + " |")

    skipped: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["skipped"]:
            skipped.setdefault((r["arch"], r["task"]), r["error"] or "")
    if skipped:
        out += ["", "## Skipped", ""]
        for (arch, task), why in skipped.items():
            out.append(f"- `{arch}` ({task}): {why}")

    fails = [r for r in rows if not r["ok"] and not r["skipped"] and r["error"] != CPD_MISSING]
    if fails:
        out += ["", "## Failures", ""]
        for r in fails:
            err = (r["error"] or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"- `{r['arch']}` ({r['task']}) {r['tool']} {r['ratio']:g}: {err[:300]}")
    n_missing = sum(1 for r in rows if r["error"] == CPD_MISSING)
    if n_missing:
        out += ["", f"{n_missing} rows: `{CPD_MISSING}`."]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, rows: list[dict], meta: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_markdown(rows, meta))
    tmp.replace(path)
