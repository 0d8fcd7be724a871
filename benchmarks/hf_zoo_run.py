"""Subprocess runner and result files of the zoo benchmarks.

One hang or crash must not kill a whole run: each architecture runs in a worker
subprocess that reports through protocol lines (``@@KIND json``). Part of
:mod:`hf_zoo` (which re-exports everything here); see its docstring.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

PROTO = "@@"  # prefix of the protocol lines a worker prints on stdout


# --------------------------------------------------------------------------------------
# subprocess runner (one hang or crash must not kill the whole run)


def _where(e: BaseException) -> str:
    """`` [at file.py:line in func]``: the innermost frame of ``e``'s traceback that is
    not inside torch itself (so a shape error points at the model or the pruner)."""
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if not frames:
        return ""
    sep = os.sep
    pick = next((f for f in reversed(frames)
                 if f"{sep}torch{sep}" not in f.tb_frame.f_code.co_filename), frames[-1])
    code = pick.tb_frame.f_code
    return f" [at {Path(code.co_filename).name}:{pick.tb_lineno} in {code.co_name}]"


def _short(e: BaseException, n: int = 300) -> str:
    s = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


def emit(kind: str, payload: Any = None) -> None:
    """Worker side: print one protocol line (``@@KIND {json}``) and flush."""
    sys.stdout.write(f"{PROTO}{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def run_streaming(
    cmd: list[str],
    timeout: float,
    on_event: Callable[[str, Any], None],
    *,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    quiet_kinds: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """Run ``cmd``; call ``on_event(kind, payload)`` for each ``@@KIND json`` line it
    prints. ``timeout`` is an *inactivity* limit: it restarts at every protocol line,
    so each step the worker announces gets ``timeout`` seconds; lines whose kind is in
    ``quiet_kinds`` are reported but do not restart it.

    Returns ``(status, tail)`` with status ``"ok"``, ``"timeout"`` or ``"exit <rc>"``
    and ``tail`` the last non-protocol output lines (for error messages)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,
    )
    q: queue.Queue = queue.Queue()

    def reader():
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=reader, daemon=True).start()
    tail: list[str] = []
    deadline = time.monotonic() + timeout
    status = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            status = "timeout"
            break
        if line is None:
            break
        line = line.rstrip("\n")
        if line.startswith(PROTO):
            kind, _, rest = line[len(PROTO):].partition(" ")
            try:
                payload = json.loads(rest) if rest else None
            except json.JSONDecodeError:
                payload = rest
            on_event(kind, payload)
            if kind not in quiet_kinds:
                deadline = time.monotonic() + timeout
        else:
            if log is not None:
                log(line)
            if line.strip():
                tail.append(line)
                del tail[:-20]
    if status == "timeout":
        try:
            os.killpg(proc.pid, 9)  # the worker's own session: only what we started
        except ProcessLookupError:
            pass
        proc.wait()
        return status, tail
    rc = proc.wait()
    return ("ok" if rc == 0 else f"exit {rc}"), tail


def crash_reason(status: str, tail: list[str]) -> str:
    last = next((t for t in reversed(tail) if "Error" in t or "error" in t), None)
    last = last or (tail[-1] if tail else "")
    return f"worker {status}" + (f": {last.strip()[:300]}" if last else "")


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def merge_rows(old: list[dict], new: list[dict], key: Callable[[dict], Any]) -> list[dict]:
    """``old`` rows with those that ``new`` re-measured replaced (same key), new keys
    appended; order: old order first."""
    fresh = {key(r): r for r in new}
    out, seen = [], set()
    for r in old:
        k = key(r)
        out.append(fresh.get(k, r))
        seen.add(k)
    out.extend(r for r in new if key(r) not in seen)
    return out


def read_rows(path: Path) -> list[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, list) else []
    except (FileNotFoundError, json.JSONDecodeError):
        return []
