"""TensorBoard event files of a run (``RUN/tb/``), written through ``torch.utils.tensorboard``.

Every record of ``metrics.jsonl`` becomes scalars tagged ``<split>/<key>`` (``train/bpd``,
``train/lr``, ``train/images_per_s``, ``train/grad_norm``, ``train/nonfinite``,
``train/norm_order/0``, ``test/bpd``, ``test/bpd_stderr``, …) at its step, and every sample grid
PNG becomes an image (``samples``). ``tensorboard`` is an optional extra
(``pip install "invflow[tensorboard]"``); without it the run says once why it writes no event
files and trains on. On resume the writer purges events past the resumed step
(``purge_step``), so a step is never recorded twice.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SKIPPED_KEYS = frozenset({"step", "split"})


class TensorBoardLog:
    """Scalars and images of one run in ``log_dir``; ``None`` writer means "not writing"."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.writer = _summary_writer(self.log_dir, purge_step)

    def scalars(self, record: dict[str, Any]) -> None:
        """Write a ``metrics.jsonl`` record: every finite number as ``<split>/<key>`` at
        ``record["step"]``."""
        if self.writer is None:
            return
        prefix = record.get("split", "train")
        for key, value in record.items():
            if key in SKIPPED_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, global_step=record["step"])
        self.writer.flush()  # on disk at once, like metrics.jsonl: a killed run loses nothing logged

    def image(self, tag: str, step: int, png: Path) -> None:
        """Add the PNG at ``png`` (a sample grid or density plot) as image ``tag`` at ``step``."""
        if self.writer is None:
            return
        with Image.open(png) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image(tag, pixels, global_step=step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_available() -> tuple[bool, str]:
    """Whether ``torch.utils.tensorboard`` can write event files, and if not, why (one line)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        return False, f"{err}"
    return True, ""


def _summary_writer(log_dir: Path, purge_step: int | None):
    available, why = tensorboard_available()
    if not available:
        warnings.warn(f"not writing TensorBoard event files to {log_dir}: the tensorboard package is not "
                      f"installed ({why}); pip install \"invflow[tensorboard]\" to get them", RuntimeWarning,
                      stacklevel=2)
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
