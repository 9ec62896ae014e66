"""Numeric arguments checked where they enter the public API, each with a one-line ``ValueError``
instead of a torch traceback deep inside (or, worse, a silent NaN from ``temperature=nan``)."""
from __future__ import annotations

import math
import numbers
import os

import torch

MEMORY_FRACTION = 0.5  # refuse a single result larger than this share of the device's memory


def check_count(value: object, name: str) -> int:
    """``value`` as an ``int`` >= 1 (a bool, a fraction or a string is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_number(value: object, name: str, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite ``float`` in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value:g}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value:g}")
    return value


def device_memory_bytes(device: torch.device) -> int:
    """Total memory of ``device``: the GPU's, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(nbytes: int, device: torch.device, what: str) -> None:
    """Refuse up front a result that cannot reasonably fit, rather than fail inside an allocation."""
    total = device_memory_bytes(device)
    if nbytes > MEMORY_FRACTION * total:
        raise ValueError(f"{what} needs {nbytes / 2**30:.1f} GiB for the result alone, more than "
                         f"{MEMORY_FRACTION:.0%} of the {total / 2**30:.1f} GiB of {device.type} memory; "
                         "ask for fewer at a time")
