"""Run logging: a JSON-lines metrics file and a progress bar, both rank-0 only."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cpd.report.atomic import atomic_path

__all__ = ["JsonLinesLog", "progress_bar", "clean_json"]


def clean_json(value: Any) -> Any:
    """``value`` with nan/inf floats turned into ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


class JsonLinesLog:
    """Appends one JSON object per line to ``path``; a no-op with ``path=None``.

    Each line is flushed at once, so ``tail -f`` follows a run and a kill loses at
    most the line being written (which the resume truncation below removes).

    Args:
        path: the ``.jsonl`` file, or ``None`` (non-zero ranks, or no ``out_dir``).
        resume_step: when resuming from the checkpoint of this step, drop the lines
            logged after it by the interrupted run, so the file reads as one run.
    """

    def __init__(self, path: str | os.PathLike[str] | None, resume_step: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run in an old folder starts a fresh log

    def _truncate_after(self, step: int) -> None:
        kept: list[str] = []
        for line in self.path.read_text().splitlines():  # type: ignore[union-attr]
            try:
                if int(json.loads(line).get("step", 0)) <= step:
                    kept.append(line)
            except (ValueError, TypeError, AttributeError):
                continue  # a half-written last line from the kill
        with atomic_path(self.path) as tmp:  # type: ignore[arg-type]
            tmp.write_text("".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (nan/inf become null) as one line."""
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(clean_json(record), allow_nan=False) + "\n")


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    """A step progress bar, disabled unless ``enabled`` and stderr is a terminal.

    Non-TTY output (CI logs, ``nohup``) would get one carriage-return line per refresh,
    which is noise; the JSON-lines log is the record there.
    """
    return tqdm(
        total=total,
        initial=initial,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        unit="step",
        leave=True,
    )
