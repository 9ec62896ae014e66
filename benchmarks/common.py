"""Shared pieces of the benchmark scripts: tensor-memory accounting (from invflow), environment
header, JSON output."""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from invflow.compare.memory import PeakTensorMemory  # noqa: F401  (re-exported for the scripts)

RESULTS = Path(__file__).resolve().parent / "results"


def environment(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """What a result depends on: torch version, device, threads, and the command to reproduce it."""
    device = torch.device(device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    return {
        "torch": torch.__version__,
        "device": f"{device.type} ({name})",
        "threads": torch.get_num_threads(),
        **extra,
        "command": "python " + " ".join(sys.argv),
    }


def print_environment(meta: dict[str, Any]) -> None:
    print(" | ".join(f"{k}: {v}" for k, v in meta.items()))


def write_results(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write ``{"meta": ..., "results": ...}`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return path
