"""The README.md model card of a saved folder: where it came from and the numbers."""

from __future__ import annotations

from typing import Any

from cpd.io.inputs import InputSpec
from cpd.plan.plan import Plan

__all__ = ["human", "model_card", "percent_change"]


def human(n: float | None) -> str:
    """``1234567`` -> ``"1.23 M"``; ``None`` -> ``"-"``."""
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:g}"


def percent_change(before: float | None, after: float | None) -> str:
    """``(100, 40)`` -> ``"-60.0%"``; ``"-"`` when either is unknown."""
    if before is None or after is None or before == 0:
        return "-"
    return f"{(after - before) / before * 100:+.1f}%"


def _metric(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def model_card(
    *,
    name: str,
    source: str,
    inputs: InputSpec,
    plans: list[Plan],
    macs: tuple[int | None, int],
    params: tuple[int | None, int],
    metrics: dict[str, Any] | None,
    version: str,
) -> str:
    """Markdown for ``README.md``.

    Args:
        name: the folder name (used in the load example).
        source: model string of the original architecture.
        inputs: the example input the counts are for.
        plans: every plan applied, oldest first.
        macs, params: ``(before, after)``; ``before`` may be unknown (``None``).
        metrics: optional evaluation results, name -> value.
        version: cpd version that wrote the folder.
    """
    plan = plans[-1]
    arg = f"`{inputs.kwarg}` of" if inputs.kwarg else "a tensor of"
    # prune() overwrites a macs= / params= target with the fraction achieved, so
    # only a ratio target survives in the plan; the table shows what was achieved.
    target = "".join(f"; target: {k[len('target_'):]}={v}" for k, v in plan.meta.items()
                     if k.startswith("target_"))
    lines = [
        "---",
        "library_name: cpd",
        "tags: [pruning, structured-pruning, cpd]",
        "---",
        "",
        f"# {name}",
        "",
        f"A structurally pruned model made with cpd {version} (Comb, Prune, Distill) from "
        f"`{source}`.",
        "",
        "| | before | after | change |",
        "|---|---:|---:|---:|",
        f"| MACs | {human(macs[0])} | {human(macs[1])} | {percent_change(macs[0], macs[1])} |",
        f"| Parameters | {human(params[0])} | {human(params[1])} | {percent_change(params[0], params[1])} |",
        "",
        f"MACs are for one forward pass on {arg} shape `{tuple(inputs.shape)}`.",
        "",
        f"- criterion: {plan.meta.get('importance', 'unknown')}{target}",
        f"- groups pruned: {len(plan.keep)}; channels removed: {plan.removed()}",
        f"- rolled back (pruning them broke the forward): {plan.meta.get('rolled_back') or 'none'}",
    ]
    if len(plans) > 1:
        lines.append(f"- pruned {len(plans)} times; earlier plans are in base_plan_*.json")
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_metric(v)} |" for k, v in metrics.items()]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import cpd.io",
        "",
        f'model = cpd.io.load("{name}")  # nn.Module in eval mode',
        "```",
        "",
        "Loading rebuilds the original architecture from the source string, applies "
        "`plan.json`, and loads `model.safetensors`; no code is read from this folder."
        + (" A `py:` source imports that module from your own Python environment."
           if source.startswith("py:") else ""),
        "",
    ]
    return "\n".join(lines)
