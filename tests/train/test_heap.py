"""``train.retain_freed_memory`` (train/heap.py): glibc serves a large block from its heap and keeps
it when freed, instead of mapping fresh pages and returning them; other C libraries, or a refusal,
change nothing; ``train`` applies it only when the config says so. What glibc does is read from its
own accounting (``mallinfo2``/``mallinfo``), which does not depend on the kernel's page reclaim or on
load (page-fault counts do); nothing is timed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from invflow.models.registry import load_config
from invflow.train import heap, loop

# one 40 MB block, over glibc's largest dynamic mmap threshold (32 MiB): by default it is mapped
# on its own and unmapped when freed
_ACCOUNTING = """
import ctypes, sys, torch
from invflow.train.heap import _glibc, retain_freed_memory
libc = _glibc()
size_t = ctypes.c_size_t if hasattr(libc, "mallinfo2") else ctypes.c_int
class MallInfo(ctypes.Structure):
    _fields_ = [(name, size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                             "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo = libc.mallinfo2 if hasattr(libc, "mallinfo2") else libc.mallinfo
mallinfo.restype = MallInfo
threshold = retain_freed_memory() if sys.argv[1] == "retain" else None
before = mallinfo()
block = torch.empty(10_000_000)
during = mallinfo()
del block
after = mallinfo()
print(during.hblkhd - before.hblkhd, after.fordblks - before.fordblks, threshold)
"""
BLOCK = 40_000_000


def _accounting(mode: str) -> tuple[int, int, str]:
    # glibc's defaults: no malloc tunables inherited from the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", _ACCOUNTING, mode], capture_output=True, text=True,
                         check=True, env=env)
    mapped, kept, threshold = out.stdout.split()
    return int(mapped), int(kept), threshold


@pytest.mark.skipif(heap._glibc() is None, reason="the C library is not glibc: nothing to tune")
def test_a_freed_block_is_kept_for_reuse_instead_of_unmapped() -> None:
    mapped, kept, _ = _accounting("default")
    assert mapped >= BLOCK and kept < BLOCK // 10  # glibc's default: mapped alone, returned when freed
    mapped, kept, threshold = _accounting("retain")
    assert mapped == 0 and kept >= 0.99 * BLOCK  # from the heap, and kept there after the free
    assert int(threshold) in heap.MMAP_THRESHOLDS


class _FakeLibc:
    def __init__(self, accepted_threshold: int | None) -> None:
        self.accepted, self.calls = accepted_threshold, []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        if param == heap.M_MMAP_THRESHOLD:
            return int(self.accepted is not None and value <= self.accepted)
        return 1


def test_the_largest_mmap_threshold_glibc_accepts_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeLibc(accepted_threshold=1 << 25)
    monkeypatch.setattr(heap, "_glibc", lambda: fake)
    assert heap.retain_freed_memory() == 1 << 25
    assert fake.calls == [(heap.M_MMAP_THRESHOLD, t) for t in heap.MMAP_THRESHOLDS] + [
        (heap.M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD)]


def test_a_refusing_glibc_leaves_the_trim_threshold_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeLibc(accepted_threshold=None)
    monkeypatch.setattr(heap, "_glibc", lambda: fake)
    assert heap.retain_freed_memory() is None
    assert all(param == heap.M_MMAP_THRESHOLD for param, _ in fake.calls)


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("", ""))
    assert heap._glibc() is None and heap.retain_freed_memory() is None


@pytest.mark.parametrize("retain", [True, False])
def test_train_applies_the_setting_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    retain: bool) -> None:
    calls: list[int] = []
    monkeypatch.setattr(loop, "retain_freed_memory", lambda: calls.append(1))
    config = load_config("resflow-toy-checkerboard", {
        "train.steps": 1, "train.eval_batches": 1, "train.n_samples_grid": 4, "model.blocks_per_scale": 1,
        "data.batch_size": 8, "data.toy_samples": 16, "train.retain_freed_memory": retain})
    loop.train(config, tmp_path / "run", progress=False)
    assert calls == ([1] if retain else [])
