"""Keep freed memory in the process during training instead of handing it back to the OS.

glibc's ``malloc`` serves large blocks (above a dynamic threshold, at most 32 MiB) with fresh
``mmap`` pages and returns the top of its heap to the OS once more than a threshold is free. A
training step frees most of what its forward pass allocated, so the next step faults the same
pages in again and the kernel zeroes each one: about 70,000 page faults and 0.1 s of system time
per step of the ``vs_reference`` residual-flow step on one thread here, 5,000 on the Glow step
(``benchmarks/heap_retention.py``). ``retain_freed_memory`` sets glibc's own tunables (``mallopt``:
``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``; the ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables, but settable after start-up) so freed blocks
are reused. PyTorch's CPU tuning guide reaches the same end by preloading jemalloc or tcmalloc,
which this needs no library for. The process keeps its peak memory until it exits.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

LOG = logging.getLogger(__name__)

# mallopt parameters, <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap; glibc refuses more than its heap limit allows on
#: some versions, so smaller values are tried in turn (32 MiB is accepted by every version).
MMAP_THRESHOLDS = (1 << 30, 1 << 28, 1 << 25)
#: Free memory kept at the top of the heap before glibc trims it (2 GiB - 1: ``int`` maximum).
TRIM_THRESHOLD = (1 << 31) - 1


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc with ``mallopt``; ``None`` elsewhere (musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def retain_freed_memory() -> int | None:
    """Make glibc keep freed blocks for reuse (module docstring); returns the ``mmap`` threshold set
    in bytes, or ``None`` where the C library is not glibc or refused (nothing changed then)."""
    libc = _glibc()
    if libc is None:
        return None
    threshold = next((t for t in MMAP_THRESHOLDS if libc.mallopt(M_MMAP_THRESHOLD, t) == 1), None)
    if threshold is None or libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        LOG.debug("glibc refused the malloc thresholds; freed memory goes back to the OS as before")
        return None
    return threshold
