"""Checkpoints that cannot be lost or run code (docs/architecture.md section 6).

A checkpoint file is a header line ``invflow-checkpoint <format> <sha256 of payload>`` followed
by the payload written by ``torch.save``. It is written atomically by :mod:`invflow.storage`
(temporary file in the same directory, fsync, rename), so a crash or a full disk leaves either
the old or the new file. Loading verifies the checksum and uses ``torch.load(weights_only=True)``,
so a checkpoint holds only tensors and plain data and can never execute code.

A run keeps its newest ``step-N.pt`` files and ``last.pt``, an independent copy of the newest
one (its own file, not a link: one bad write or bit flip cannot take both). Every skip past an
unreadable file is announced as a :class:`CheckpointFallbackWarning`.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch

from invflow import run_files
from invflow.storage import RESUME_HINT, DiskFullError, stale_temporaries, write_atomic
from invflow.train.faults import write_checkpoint_bytes

MAGIC = b"invflow-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt, or from another format/model."""


class NewerCheckpointError(CheckpointError):
    """A checkpoint written by a newer invflow (a higher format version): not damaged, so never
    passed over for an older one (a run resumed from that would later overwrite it)."""


class CheckpointFallbackWarning(UserWarning):
    """A checkpoint was unreadable and an older one is used instead."""


def _encode(state: dict[str, Any]) -> tuple[bytes, bytes]:
    """The header line and the payload of a checkpoint file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = b"%s %d %s\n" % (MAGIC, FORMAT_VERSION, hashlib.sha256(payload).hexdigest().encode())
    return header, payload


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically to ``path`` (temp file + fsync + rename)."""
    _write_file(path, *_encode(state))


def _write_file(path: Path, header: bytes, payload: bytes) -> None:
    """One atomic checkpoint file, through the fault-injection hook (a no-op unless INVFLOW_FAULT is set)."""
    write_atomic(path, header + payload, write=write_checkpoint_bytes)


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
    if parts[1].isdigit() and int(parts[1]) > FORMAT_VERSION:
        raise NewerCheckpointError(
            f"{path}: written by a newer invflow (checkpoint format {int(parts[1])}; this version reads "
            f"format {FORMAT_VERSION}); use that version of invflow, this one will not touch the run"
        )
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
    found = [(int(m.group(1)), p) for p in Path(directory).iterdir()
             if (m := run_files.STEP_CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def check_finite_weights(state: dict[str, Any], path: Path) -> None:
    """Raise ``CheckpointError`` if a floating tensor of ``state["model"]`` or ``state["ema"]`` is
    not finite."""
    for section in ("model", "ema"):
        for key, value in state.get(section, {}).items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(
                    f"{path}: refusing to write a checkpoint with non-finite values in {section}.{key}: "
                    "the run diverged; lower train.lr, raise train.warmup_steps or set train.grad_clip"
                )


def write_run_checkpoint(state: dict[str, Any], directory: Path, keep: int) -> Path:
    """Save ``step-N.pt``, keep the newest ``keep`` step files, then write ``last.pt`` as a second,
    independent copy (own inode: damage to one file leaves the other).

    Non-finite weights are refused (``CheckpointError``), so they can never replace a good
    checkpoint. A full disk raises ``DiskFullError`` saying which state is on disk.
    """
    directory = Path(directory)
    path = directory / run_files.step_checkpoint(state["step"])
    check_finite_weights(state, path)
    header, payload = _encode(state)
    try:
        _write_file(path, header, payload)
    except DiskFullError as err:
        raise err.with_detail(
            f"step {state['step']} was not saved, the older checkpoints are intact; {RESUME_HINT}") from None
    for old in step_checkpoints(directory)[keep:]:  # before the copy: less space needed at once
        old.unlink(missing_ok=True)
    try:
        _write_file(directory / run_files.LAST_CHECKPOINT, header, payload)
    except DiskFullError as err:
        raise err.with_detail(
            f"the state of step {state['step']} is saved in {path.name}; {RESUME_HINT}"
        ) from None
    for stale in stale_temporaries(directory):  # left behind by a process killed mid-write
        stale.unlink(missing_ok=True)
    return path


class FoundCheckpoint(NamedTuple):
    """A verified checkpoint, its file, and the newer files skipped as unreadable ``(file, reason)``."""

    state: dict[str, Any]
    path: Path
    skipped: tuple[tuple[Path, str], ...] = ()

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    def describe(self) -> str:
        return f"{self.path} (step {self.step})"

    def fallbacks(self) -> list[str]:
        """One sentence per skipped file: the file, why, and what is used instead."""
        return [f"skipped {reason}; using {self.describe()}" for _, reason in self.skipped]


def _try_load(path: Path, skipped: list[tuple[Path, str]]) -> dict[str, Any] | None:
    try:
        return load_checkpoint_file(path)
    except FileNotFoundError:
        return None
    except NewerCheckpointError:
        raise
    except (CheckpointError, OSError, RuntimeError) as err:  # RuntimeError: torch.load of a bad payload
        skipped.append((path, str(err) if str(err).startswith(str(path)) else f"{path}: {err}"))
        return None


def latest_good_checkpoint(directory: Path) -> FoundCheckpoint | None:
    """The newest checkpoint in ``directory`` that verifies, or ``None`` if there is none at all.

    ``last.pt`` is tried first; step files newer than it are tried before it is used (a kill
    between the two writes leaves ``last.pt`` one checkpoint behind). Each unreadable file passed
    over is announced with a :class:`CheckpointFallbackWarning`; if none is readable,
    ``CheckpointError`` lists them all.
    """
    directory = Path(directory)
    skipped: list[tuple[Path, str]] = []
    last_path = directory / run_files.LAST_CHECKPOINT
    last = _try_load(last_path, skipped) if last_path.is_file() else None
    found = None
    for path in step_checkpoints(directory):
        step = int(run_files.STEP_CHECKPOINT.match(path.name).group(1))
        if last is not None and step <= last.get("step", 0):
            break
        state = _try_load(path, skipped)
        if state is not None:
            found = FoundCheckpoint(state, path, tuple(skipped))
            break
    if found is None and last is not None:
        found = FoundCheckpoint(last, last_path, tuple(skipped))
    if found is None:
        if skipped:
            raise CheckpointError("no readable checkpoint: " + "; ".join(reason for _, reason in skipped))
        return None
    for message in found.fallbacks():
        warnings.warn(message, CheckpointFallbackWarning, stacklevel=2)
    return found
