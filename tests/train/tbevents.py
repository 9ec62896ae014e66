"""Reading a run's TensorBoard event files back with tensorboard's own ``EventAccumulator``."""
from __future__ import annotations

from pathlib import Path

import pytest


def event_accumulator(log_dir: Path):
    """All scalars and images under ``log_dir``, loaded; skips the test when tensorboard is absent."""
    pytest.importorskip(
        "tensorboard", reason="the tensorboard extra is not installed (pip install 'invflow[tensorboard]')"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalar_steps(events, tag: str) -> list[int]:
    return [event.step for event in events.Scalars(tag)]
