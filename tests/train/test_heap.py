"""``train.retain_freed_memory`` (train/heap.py): glibc keeps freed blocks, so a freed block's pages
are not faulted in again; other C libraries, or a refusal, change nothing; ``train`` applies it
only when the config says so. Page faults are counted (``getrusage``), nothing is timed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from invflow.models.registry import load_config
from invflow.train import heap, loop

# a step's worth of activations: 8 blocks of 6.4 MB (Glow's hidden layers at batch 64) written,
# then freed, 10 times
_FAULTS = """
import resource, sys, torch
from invflow.train.heap import retain_freed_memory
threshold = retain_freed_memory() if sys.argv[1] == "retain" else None
def step():
    activations = [torch.empty(1_600_000).fill_(1.0) for _ in range(8)]
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, threshold)
"""


def _faults(mode: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    faults, threshold = out.stdout.split()
    return int(faults), threshold


@pytest.mark.skipif(heap._glibc() is None, reason="the C library is not glibc: nothing to tune")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    default_faults, _ = _faults("default")
    retained_faults, threshold = _faults("retain")
    pages = 10 * 8 * 6_400_000 // 4096
    assert default_faults > pages // 2, default_faults  # the freed pages went back and were faulted in again
    assert retained_faults < pages // 5, retained_faults  # the first step's pages were reused
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
