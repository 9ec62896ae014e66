"""Graceful stop on SIGINT / SIGTERM: finish the step, checkpoint, say where ``--resume`` continues.

Cluster schedulers preempt a job with SIGTERM and kill it with SIGKILL after a grace period;
Ctrl-C sends SIGINT. Either only sets a flag here; the training loop finishes the step it is in,
writes a checkpoint atomically and raises ``TrainingInterrupted``, which the CLI turns into exit
code 128 + signal (130 for SIGINT, 143 for SIGTERM). A second signal stops at once, as usual.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

LOG = logging.getLogger(__name__)  # the CLI shows these; a library caller's logging decides

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """A run stopped by a signal after checkpointing ``step`` to ``path``."""

    def __init__(self, signum: int, step: int, path: Path | None) -> None:
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        where = f"wrote {path}; " if path is not None else ""
        super().__init__(f"interrupted by {name} after step {step}: {where}"
                         f"rerun the same command with --resume to continue from step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """While installed, SIGINT and SIGTERM record a stop request instead of ending the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: the previous behaviour, at once
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum
        LOG.warning(f"received {signal.Signals(signum).name}: finishing this step and writing a checkpoint "
                    "(send it again to stop at once)")
