"""The held-out files of a run on an image folder (``test_split.json``; Lu & Huang 2020, app. D,
hold out images of folders that have no official split).

A folder run chooses its test files once, by the rule its config states, and records them with
the SHA-256 of each file's bytes. Every later command of that run (``train --resume``, ``eval``,
``reconstruct``, ``interpolate``) evaluates exactly those files, and refuses by name when one is
missing or its content changed, or when a training file is a copy of a held-out one; the record
is never rewritten. A record of 0.2.0 (no hashes) still fixes the file list, with a warning that
the contents are not checked.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from invflow.storage import write_atomic

FORMAT = 2  # 1: 0.2.0's record (files, no hashes); 2: with "sha256"
_SHOWN = 5  # files named in one error


@dataclass(frozen=True)
class HeldOutSet:
    """The held-out files (relative to the folder, in order), their SHA-256 (``None`` in a
    0.2.0 record), the rule that chose them, and the record's path once written or read."""

    files: list[str]
    sha256: list[str] | None
    rule: str
    path: Path | None = None

    def describe(self) -> str:
        where = f" recorded in {self.path}" if self.path else ""
        return f"{len(self.files)} held-out files{where}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chosen(root: Path, files: list[str], rule: str) -> HeldOutSet:
    """A new held-out set: ``files`` (relative to ``root``) chosen by ``rule``, hashed."""
    return HeldOutSet(list(files), [file_sha256(root / f) for f in files], rule)


def write(held: HeldOutSet, path: Path, extra: dict) -> HeldOutSet:
    """Record ``held`` at ``path`` (with ``extra`` fields: data dir, split options); a record
    already there is never replaced."""
    if path.exists():
        raise FileExistsError(f"{path} already records this run's held-out files; it is never rewritten")
    record = {"format": FORMAT, **extra, "rule": held.rule, "count": len(held.files), "files": held.files,
              "sha256": held.sha256}
    write_atomic(path, json.dumps(record, indent=1) + "\n")
    return HeldOutSet(held.files, held.sha256, held.rule, path)


def read(path: Path) -> HeldOutSet:
    """The record at ``path``; a ``ValueError`` naming the file when it is damaged or written by a
    newer invflow (never treated as absent, since the run would then choose other files)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the run's record of its held-out files cannot be read ({e}); "
                         "restore it from a backup: other files would not be this run's test set") from None
    version = record.get("format", 1) if isinstance(record, dict) else None
    if isinstance(version, int) and version > FORMAT:
        raise ValueError(f"{path}: written by a newer invflow (format {version}; this version reads up to "
                         f"{FORMAT}); use that version")
    files, hashes = (record.get("files"), record.get("sha256")) if isinstance(record, dict) else (None, None)
    if not (isinstance(files, list) and files and all(isinstance(f, str) for f in files)) or (
            hashes is not None and not (isinstance(hashes, list) and len(hashes) == len(files))):
        raise ValueError(f"{path}: not a record of held-out files (expected a non-empty 'files' list and "
                         "one 'sha256' per file)")
    return HeldOutSet(files, hashes, str(record.get("rule", "")), Path(path))


def held_out_paths(held: HeldOutSet, root: Path) -> list[Path]:
    """The held-out files under ``root``, checked: each present, and, for a recorded set, each with
    its recorded content (a set :func:`chosen` just now was hashed from these very files)."""
    paths = [root / f for f in held.files]
    missing = [f for f, p in zip(held.files, paths) if not p.is_file()]
    if missing:
        raise ValueError(f"{held.describe()}: {len(missing)} missing from {root}: {_names(missing)}; "
                         "the run's test set is those files and no others: restore them")
    if held.path is None:
        return paths
    if held.sha256 is None:
        warnings.warn(f"{held.path}: recorded without content hashes (invflow 0.2.0): the held-out files' "
                      "names are used, their contents are not checked", UserWarning, stacklevel=2)
        return paths
    changed = [f for f, p, h in zip(held.files, paths, held.sha256) if file_sha256(p) != h]
    if changed:
        raise ValueError(f"{held.describe()}: {len(changed)} changed since they were recorded (SHA-256): "
                         f"{_names(changed)}; the run's test set is the recorded contents: restore them")
    return paths


def training_paths(held: HeldOutSet, root: Path, files: list[Path]) -> list[Path]:
    """``files`` (the folder's images) less the held-out ones; a ``ValueError`` naming any that is
    a byte-for-byte copy of a held-out file (a test image would be trained on)."""
    held_names = set(held.files)
    train = [p for p in files if p.relative_to(root).as_posix() not in held_names]
    if held.sha256 is not None:
        held_hashes = dict(zip(held.sha256, held.files))
        copies = [f"{p.relative_to(root).as_posix()} (= {held_hashes[h]})" for p in train
                  if (h := file_sha256(p)) in held_hashes]
        if copies:
            raise ValueError(f"{root}: {len(copies)} training image(s) are copies of held-out files: "
                             f"{_names(copies)}; remove them, or the run would train on its test set")
    return train


def _names(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more
