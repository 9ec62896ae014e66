"""Checkpoints that cannot be lost or run code (docs/architecture.md section 6).

A checkpoint file is a header line ``invflow-checkpoint <format> <sha256 of payload>`` followed
by the payload written by ``torch.save``. It is written to a temporary file in the same
directory, flushed and fsynced, then renamed into place, so a crash leaves either the old or
the new file. Loading verifies the checksum and uses ``torch.load(weights_only=True)``, so a
checkpoint holds only tensors and plain data and can never execute code.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from invflow.train.faults import write_checkpoint_bytes

MAGIC = b"invflow-checkpoint"
FORMAT_VERSION = 1
STEP_PATTERN = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt, or from another format/model."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically to ``path`` (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = b"%s %d %s\n" % (MAGIC, FORMAT_VERSION, hashlib.sha256(payload).hexdigest().encode())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_checkpoint_bytes(f, header + payload)  # a no-op hook unless INVFLOW_FAULT is set
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Read and verify one checkpoint file; ``CheckpointError`` names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    header, sep, payload = data.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        raise CheckpointError(f"{path}: not an invflow checkpoint (bad header)")
    if parts[1] != str(FORMAT_VERSION).encode():
        raise CheckpointError(
            f"{path}: checkpoint format version {parts[1].decode(errors='replace')}, "
            f"this invflow reads version {FORMAT_VERSION}"
        )
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise CheckpointError(f"{path}: checksum mismatch, the file is truncated or corrupt")
    return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")


def step_checkpoints(directory: Path) -> list[Path]:
    """The ``step-N.pt`` files of a checkpoint directory, newest first."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(directory).iterdir() if (m := STEP_PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def check_finite_weights(state: dict[str, Any], path: Path) -> None:
    """Raise ``CheckpointError`` if a floating tensor of ``state["model"]`` or ``state["ema"]`` is not finite."""
    for section in ("model", "ema"):
        for key, value in state.get(section, {}).items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(
                    f"{path}: refusing to write a checkpoint with non-finite values in {section}.{key}: "
                    "the run diverged; lower train.lr, raise train.warmup_steps or set train.grad_clip"
                )


def write_run_checkpoint(state: dict[str, Any], directory: Path, keep: int) -> Path:
    """Save ``step-N.pt``, point ``last.pt`` at it (atomic hard link + rename), keep the newest ``keep``.

    Non-finite weights are refused (``CheckpointError``), so they can never replace a good checkpoint.
    """
    directory = Path(directory)
    path = directory / f"step-{state['step']:08d}.pt"
    check_finite_weights(state, path)
    save_checkpoint(state, path)
    link = directory / ".last.pt.tmp"
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
        os.replace(link, directory / "last.pt")
    except OSError:  # file systems without hard links: a second atomic write
        link.unlink(missing_ok=True)
        save_checkpoint(state, directory / "last.pt")
    for old in step_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    for stale in directory.glob(".step-*.tmp"):  # left behind by a process killed mid-write
        stale.unlink(missing_ok=True)
    return path


def latest_good_checkpoint(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint in ``directory`` that verifies; skipped bad files are reported."""
    candidates = [Path(directory) / "last.pt", *step_checkpoints(directory)]
    errors = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return load_checkpoint_file(path), path
        except CheckpointError as err:
            errors.append(str(err))
    if errors:
        raise CheckpointError("no readable checkpoint: " + "; ".join(errors))
    return None
