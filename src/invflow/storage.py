"""Every file invflow writes for a run goes through here (docs/architecture.md, section 6).

Checkpoints, sample PNGs, ``metrics.jsonl``, ``config.yaml``/``environment.json`` and the files of
``invflow compare`` are written with :func:`write_atomic` (temporary file in the same directory,
fsync, rename: a crash or a full disk leaves the old file or the new one, never half of one) or
appended with :func:`append_text` (a failed append is cut back to the old length). A write that
fails for lack of space raises :class:`DiskFullError`, whose one-line message names the file and
the free space; the CLI prints it and exits with code 1.

Writers that own their file handles (TensorBoard's event files) wrap their writes in
``with disk_full_as_error(path): ...`` so that a full disk reads the same way. All bytes pass
through :func:`write_bytes`, the single place where tests simulate a full disk (a ``write`` hook
given to :func:`write_atomic`, like checkpoints' fault injection, ends in it too).
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# errno values that mean "no room": no space on the device, or the user's disk quota exceeded.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
# Files get the permissions a plain open() would give (mkstemp makes them private, 0600).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing ancestor)."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown space"
    if n < 1024:
        return f"{n} bytes"
    exponent = min(3, int(math.log(n, 1024)))
    return f"{n / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


RESUME_HINT = "free some space, then resume (invflow train --resume, or rerun the same invflow compare)"


class DiskFullError(OSError):
    """A run's write failed for lack of space; the message names the file and the free space."""

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = Path(path)
        self.free = free_bytes(self.path)
        self.detail = detail
        super().__init__(errno.ENOSPC, self._message(), str(self.path))

    def _message(self) -> str:
        text = f"no space left on device writing {self.path} ({_format_bytes(self.free)} free there)"
        return f"{text}; {self.detail}" if self.detail else text

    def with_detail(self, detail: str) -> DiskFullError:
        """The same error with a sentence on what was saved and how to go on."""
        return DiskFullError(self.path, detail)

    def __str__(self) -> str:
        return self._message()


def is_disk_full(err: BaseException) -> bool:
    """True for an ``OSError`` meaning the device (or the quota) is full."""
    return isinstance(err, OSError) and err.errno in NO_SPACE


@contextmanager
def disk_full_as_error(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` for lack of space inside the block into :class:`DiskFullError` for ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from None
        raise


def write_bytes(f: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to an open file: every byte of a run passes here (tests patch it)."""
    view = memoryview(data)
    while view:
        view = view[f.write(view):]


def write_atomic(path: str | Path, *chunks: bytes | str,
                 write: Callable[[BinaryIO, bytes], None] | None = None) -> Path:
    """Write the concatenated ``chunks`` to ``path`` through a fsynced temporary file and a rename;
    ``write(file, chunk)`` replaces :func:`write_bytes` (a hook that ends in it)."""

    def produce(tmp: str) -> None:
        with open(tmp, "wb") as f:  # by name, so that ``f.name`` says which file is written
            for chunk in chunks:
                (write or write_bytes)(f, chunk.encode() if isinstance(chunk, str) else chunk)

    return replace_atomic(path, produce)


def replace_atomic(path: str | Path, produce: Callable[[str], None]) -> Path:
    """``produce(tmp)`` writes a temporary file beside ``path``, which is fsynced and renamed onto
    ``path``: a reader sees the old file or the whole new one, never a part (a library that writes
    files by name, e.g. safetensors, goes through here)."""
    path = Path(path)
    with disk_full_as_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)
            produce(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path``; if the write fails, the file is cut back to its old length."""
    path = Path(path)
    with disk_full_as_error(path), path.open("ab", buffering=0) as f:  # unbuffered: no late flush
        start = f.tell()
        try:
            write_bytes(f, text.encode())
        except BaseException:
            f.truncate(start)
            raise


def stale_temporaries(directory: str | Path) -> list[Path]:
    """Temporary files left in ``directory`` by a process killed in the middle of :func:`write_atomic`."""
    directory = Path(directory)
    return sorted(directory.glob(".*.tmp")) if directory.is_dir() else []
