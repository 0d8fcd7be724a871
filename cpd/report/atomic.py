"""Atomic file writes for report artefacts (ONNX files, PNG plots).

A report is often rewritten while a run is in progress; a crash or a failed
export half-way through must never leave a truncated file where a good one was.
We write to a temporary file in the *same directory* (so ``os.replace`` is a
rename on one file system, which POSIX and Windows make atomic) and only replace
the destination once the write has fully succeeded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp creates files readable by the owner only; a report file should get the
# usual permissions. Reading the umask means setting it, so do it once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; move it onto ``dest`` on success.

    If the block raises, the temporary file is deleted and ``dest`` is untouched.
    Parent directories of ``dest`` are created.

    Example::

        with atomic_path("plot.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: some writers pick the format from it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
