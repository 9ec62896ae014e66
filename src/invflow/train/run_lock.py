"""One writer per run directory: an exclusive ``flock`` on ``RUN/.lock`` for the life of a training.

Two trainings into the same ``--out`` would interleave ``metrics.jsonl``, overwrite each other's
``config.yaml`` and mix their checkpoints. The second is refused, naming the process that holds
the directory. The kernel drops a ``flock`` when its holder dies, however it dies (SIGKILL
included), so a lock left by a killed run never blocks a later ``--resume``.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class RunLock:
    """Hold ``root/.lock`` exclusively until ``release`` (or process exit)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``ValueError`` naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"cannot create the lock file {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise ValueError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": sys.argv,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(content: bytes) -> str:
    try:
        owner = json.loads(content.decode())
        return f"process {owner['pid']} on {owner['host']} (started {owner['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file names none yet)"
