"""Running ``cpd`` in real processes, several at a time (a helper, not a test module).

A process costs ~2.5 s of CPU to import torch, so tests start all of theirs from
one module fixture through :func:`run_all` and each test checks one result.
``tests/`` is put on ``PYTHONPATH`` so that ``py:cli_models:...`` imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

Result = subprocess.CompletedProcess


def run_all(cases: dict[str, list[str]], cwd: Path, workers: int = 4) -> dict[str, Result[str]]:
    """``{name: python -m cpd.cli.main *args}`` run concurrently in ``cwd``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def one(args: list[str]) -> Result[str]:
        return subprocess.run([sys.executable, "-m", "cpd.cli.main", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(one, args) for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def ok(r: Result[str]) -> str:
    """stdout of a successful run (exit 0, no traceback)."""
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def one_error(r: Result[str], code: int = 2) -> str:
    """The single ``cpd: error: ...`` line of a failed run with exit status ``code``."""
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpd: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]
