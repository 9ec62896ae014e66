"""Deterministic fault injection for crash-safety tests (``INVFLOW_FAULT``).

A test that kills a training process on a timer depends on machine load: the run may finish
before the timer fires, or the kill may land anywhere. Instead the process kills *itself* with
``SIGKILL`` at a named point, chosen by the environment variable ``INVFLOW_FAULT``:

- ``startup``: after the model is built and a checkpoint (if any) restored, before the first step;
- ``after-step:S``: right after optimizer step ``S`` is taken, before it can be checkpointed;
- ``term-after-step:S``: the same point, but the process sends itself ``SIGTERM`` (what a
  scheduler or Ctrl-C sends) instead of dying: the run must stop cleanly, as for a real signal;
- ``checkpoint-write:K:N``: during this process's ``K``-th checkpoint file write (1-based), after
  ``N`` bytes of the temporary file are on disk (at most all but one byte, so the file is always
  cut short), i.e. a crash in the middle of writing a checkpoint.

Unset, every hook is a no-op. A malformed value is a ``ValueError`` naming the variable.
"""
from __future__ import annotations

import os
import signal
from typing import BinaryIO

import invflow.storage as storage

ENV_VAR = "INVFLOW_FAULT"
_writes = 0  # checkpoint files written by this process, for ``checkpoint-write:K:N``


def _spec() -> tuple[str, tuple[int, ...]] | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    name, *args = raw.split(":")
    arity = {"startup": 0, "after-step": 1, "term-after-step": 1, "checkpoint-write": 2}
    try:
        numbers = tuple(int(a) for a in args)
    except ValueError:
        numbers = ()
    if (
        name not in arity
        or len(args) != arity[name]
        or len(numbers) != len(args)
        or any(n < 0 for n in numbers)
    ):
        raise ValueError(f"{ENV_VAR}={raw!r}: expected 'startup', 'after-step:S', 'term-after-step:S' or "
                         "'checkpoint-write:K:N' with non-negative integers")
    return name, numbers


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def check_startup() -> None:
    """Die here if ``INVFLOW_FAULT=startup``."""
    spec = _spec()
    if spec is not None and spec[0] == "startup":
        _die()


def check_after_step(step: int) -> None:
    """Die here if ``INVFLOW_FAULT=after-step:<step>``; send this process ``SIGTERM`` if
    ``INVFLOW_FAULT=term-after-step:<step>``."""
    spec = _spec()
    if spec is None or spec[1][:1] != (step,):
        return
    if spec[0] == "after-step":
        _die()
    elif spec[0] == "term-after-step":
        os.kill(os.getpid(), signal.SIGTERM)


def write_checkpoint_bytes(f: BinaryIO, data: bytes) -> None:
    """``storage.write_bytes(f, data)``, or, for the write ``INVFLOW_FAULT=checkpoint-write:K:N`` names, write
    ``min(N, len(data) - 1)`` bytes, flush and fsync them, and die."""
    global _writes
    _writes += 1
    spec = _spec()
    if spec is None or spec[0] != "checkpoint-write" or spec[1][0] != _writes:
        storage.write_bytes(f, data)  # the one write path of every run file (a full disk is simulated there)
        return
    f.write(data[:min(spec[1][1], len(data) - 1)])
    f.flush()
    os.fsync(f.fileno())
    _die()
