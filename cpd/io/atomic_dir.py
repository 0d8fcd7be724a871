"""Writing a whole folder atomically: build it aside, then rename it into place.

The folder is written into a temporary sibling (same parent, so the final rename
stays on one file system) and moved onto the destination only once every file is
complete. If writing raises, the temporary folder is removed and the destination
is untouched, so a half-written folder never sits where a good one was.

Replacing an existing non-empty folder takes two renames (POSIX cannot swap two
directories in one call): the old folder is first renamed aside, then the new
one into place, then the old one is deleted. If the second rename fails, the old
folder is renamed back. A crash exactly between the two renames leaves the old
folder intact under its ``.NAME.*.old`` name next to the destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Shared with the file writer so that the umask is read once per process (reading
# it means setting it, which is not thread-safe).
from cpd.report.atomic import _UMASK

__all__ = ["atomic_dir"]


def _swap_in(tmp: Path, dest: Path) -> None:
    try:
        # rename() replaces a missing or *empty* destination directory atomically.
        os.rename(tmp, dest)
        return
    except OSError:
        if not dest.is_dir():
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.rmdir(old)  # only the unique name was wanted
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``dest``.

    Parents of ``dest`` are created. The caller decides beforehand whether an
    existing ``dest`` may be replaced.

    Example::

        with atomic_dir("out/model") as tmp:
            (tmp / "a.json").write_text("{}")
    """
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        # mkdtemp makes the folder owner-only, and some writers (safetensors) do the
        # same for files; give everything the permissions a plain write would.
        for p in tmp.rglob("*"):
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~_UMASK)
        os.chmod(tmp, 0o777 & ~_UMASK)
        _swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
