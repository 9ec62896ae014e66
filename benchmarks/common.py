"""Shared pieces of the benchmark scripts: tensor-memory accounting, environment header, JSON output."""
from __future__ import annotations

import json
import platform
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

RESULTS = Path(__file__).resolve().parent / "results"


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage created inside the mode (views and in-place ops share it).

    On the CPU PyTorch keeps no allocator statistics, so every tensor an operator returns is
    counted until it is garbage collected; tensors created before the mode (inputs, parameters)
    are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, ptr: int, nbytes: int) -> None:
        self._seen.discard(ptr)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self._seen:
                ptr, nbytes = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                self._seen.add(ptr)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, ptr, nbytes)
        return out


def environment(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """What a result depends on: torch version, device, threads, and the command to reproduce it."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"torch": torch.__version__, "device": f"{device.type} ({name})", "threads": torch.get_num_threads(),
            **extra, "command": "python " + " ".join(sys.argv)}


def print_environment(meta: dict[str, Any]) -> None:
    print(" | ".join(f"{k}: {v}" for k, v in meta.items()))


def write_results(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write ``{"meta": ..., "results": ...}`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return path
