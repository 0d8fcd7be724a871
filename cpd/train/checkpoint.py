"""Checkpoints: one folder per save, written atomically, verified on load.

Layout of ``<out_dir>/checkpoints/``::

    step-00000400/
        model.safetensors   weights (unwrapped module's state_dict; ties kept once)
        trainer.pt          optimizer, schedule, GradScaler, RNG states, step/epoch,
                            sampler position, best metric: plain tensors and containers,
                            loadable with torch.load(weights_only=True)
        extra.json          what callbacks asked to store (e.g. the pruning Plan)
        manifest.json       size and sha256 of the three files above
    step-00000500/ ...
    best.json               {"path": "step-00000400", "step": 400, "metric": "top1", "value": ...}

Atomicity: a checkpoint is written into a hidden temporary folder next to the others
and renamed to ``step-XXXXXXXX`` only when all four files are complete and fsynced. A
crash mid-save leaves a ``.tmp-*`` folder that is ignored (and cleaned later); the
previous checkpoints are never touched, and old ones are deleted only after the new
one is in place. ``best.json`` is replaced with :func:`cpd.report.atomic.atomic_path`.

Verification: the manifest's sizes and hashes are checked before anything is parsed,
so truncation or bit rot gives :class:`CheckpointError`, one line naming the bad file
and the previous checkpoint to fall back to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from cpd.report.atomic import atomic_path

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "CheckpointManager",
    "save_checkpoint",
    "read_checkpoint",
    "load_weights",
    "list_checkpoints",
]

FORMAT = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
EXTRA_FILE = "extra.json"
MANIFEST_FILE = "manifest.json"
BEST_FILE = "best.json"
_NAME = re.compile(r"^step-(\d{8,})$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or does not fit the model.

    The message is a single line: which file, what is wrong, and what to do.
    """


@dataclass
class Checkpoint:
    """A verified checkpoint read from disk (weights are loaded separately).

    Attributes:
        path: the checkpoint folder.
        step: the optimizer steps completed when it was written.
        state: the ``trainer.pt`` dict.
        extra: the ``extra.json`` dict (callback name -> its JSON state).
    """

    path: Path
    step: int
    state: dict[str, Any]
    extra: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk so a power cut cannot reorder it after the rename."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on Windows; nothing to do there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders under ``root`` (``step-*`` with a manifest), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / MANIFEST_FILE).is_file()]
    return [p for _, p in sorted(found)]


def _previous_hint(folder: Path) -> str:
    older = [p for p in list_checkpoints(folder.parent) if p.name < folder.name]
    if older:
        return f"delete {folder} and resume again to continue from the previous checkpoint {older[-1].name}"
    return f"delete {folder} and start the run again (there is no older checkpoint)"


def save_checkpoint(
    folder: str | os.PathLike[str], model: nn.Module, state: dict[str, Any], extra: dict[str, Any]
) -> Path:
    """Write one checkpoint folder atomically; an existing folder of that name is replaced.

    Args:
        folder: the final folder, e.g. ``out/checkpoints/step-00000400``.
        model: the (unwrapped) model; its ``state_dict`` goes to safetensors.
        state: plain tensors / numbers / strings / containers for ``trainer.pt``.
        extra: JSON-serialisable dict for ``extra.json``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Serialise extra first: a non-JSON value fails before anything is written.
    extra_text = json.dumps(extra, indent=1, sort_keys=True, allow_nan=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        torch.save(state, tmp / STATE_FILE)
        (tmp / EXTRA_FILE).write_text(extra_text)
        files = {n: {"bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in (MODEL_FILE, STATE_FILE, EXTRA_FILE)}
        manifest = {"format": FORMAT, "step": int(state.get("step", 0)), "files": files}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        for name in (*files, MANIFEST_FILE):
            _fsync(tmp / name)
        _fsync(tmp)
        if folder.exists():
            # Re-saving a step (e.g. after resuming from an older checkpoint): park the old
            # folder first; os.replace cannot overwrite a non-empty directory.
            trash = folder.parent / f".tmp-old-{folder.name}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, trash)
            os.replace(tmp, folder)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync(folder.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint:
    """Verify a checkpoint folder against its manifest and read its state and extra.

    Raises:
        CheckpointError: a missing, truncated or corrupt file (one line, with the fix).
    """
    folder = Path(folder)
    hint = _previous_hint(folder)
    manifest_path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, this cpd reads {FORMAT}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint file {manifest_path} is missing or invalid ({e}); {hint}") from None
    for name in (MODEL_FILE, STATE_FILE, EXTRA_FILE):
        path = folder / name
        expected = files.get(name, {})
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing; {hint}")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise CheckpointError(
                f"checkpoint file {path} is truncated or corrupt ({size} bytes, expected "
                f"{expected.get('bytes')}); {hint}"
            )
        if _sha256(path) != expected.get("sha256"):
            raise CheckpointError(f"checkpoint file {path} is corrupt (sha256 mismatch); {hint}")
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        extra = json.loads((folder / EXTRA_FILE).read_text())
    except Exception as e:  # noqa: BLE001 - any parse failure means the same thing here
        raise CheckpointError(f"checkpoint {folder} cannot be read ({type(e).__name__}: {e}); {hint}".replace("\n", " ")) from None
    return Checkpoint(path=folder, step=int(state["step"]), state=state, extra=extra)


def load_weights(folder: str | os.PathLike[str], model: nn.Module) -> None:
    """Load ``model.safetensors`` from ``folder`` into ``model`` (strict: every key, every shape).

    Raises:
        CheckpointError: the weights do not fit the model, typically a pruned checkpoint
            loaded into the unpruned architecture (a callback's ``on_resume`` must rebuild it).
    """
    path = Path(folder) / MODEL_FILE
    try:
        load_model(model, str(path), strict=True)
    except Exception as e:  # noqa: BLE001 - safetensors and load_state_dict raise various types
        reason = " ".join(str(e).split())[:400]
        raise CheckpointError(
            f"checkpoint weights {path} do not fit the model ({reason}); if the run pruned the model, "
            "the pruning callback's on_resume must rebuild the pruned architecture"
        ) from None


class CheckpointManager:
    """Names, rotates and finds checkpoints under one folder.

    Args:
        root: the checkpoints folder (``<out_dir>/checkpoints``).
        keep_last: how many of the newest checkpoints to keep; the best one is kept too.
    """

    def __init__(self, root: str | os.PathLike[str], keep_last: int = 2) -> None:
        self.root = Path(root)
        self.keep_last = max(1, int(keep_last))

    def folder(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        found = list_checkpoints(self.root)
        return found[-1] if found else None

    def best(self) -> dict[str, Any] | None:
        """The ``best.json`` record ``{"path", "step", "metric", "value"}`` (path absolute), or None."""
        try:
            record = json.loads((self.root / BEST_FILE).read_text())
        except (OSError, ValueError):
            return None
        record["path"] = str(self.root / record["path"])
        return record

    def save(self, step: int, model: nn.Module, state: dict[str, Any], extra: dict[str, Any]) -> Path:
        """Write the checkpoint of ``step``, then delete the ones no longer kept."""
        path = save_checkpoint(self.folder(step), model, state, extra)
        self._rotate()
        return path

    def mark_best(self, step: int, metric: str, value: float) -> None:
        """Point ``best.json`` at the checkpoint of ``step`` (which must already be saved)."""
        record = {"path": self.folder(step).name, "step": step, "metric": metric, "value": value}
        with atomic_path(self.root / BEST_FILE) as tmp:
            tmp.write_text(json.dumps(record))
        self._rotate()

    def _rotate(self) -> None:
        found = list_checkpoints(self.root)
        keep = set(found[-self.keep_last :])
        best = self.best()
        if best is not None:
            keep.add(Path(best["path"]))
        for path in found:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        for stale in self.root.glob(".tmp-*"):  # left by a crash mid-save
            shutil.rmtree(stale, ignore_errors=True)
