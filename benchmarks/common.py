"""Shared pieces of the benchmark scripts: paired timing, tensor-memory accounting (from invflow),
environment header, JSON output."""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from invflow.compare.memory import PeakTensorMemory  # noqa: F401  (re-exported for the scripts)
from invflow.train.run_dir import RunDir

RESULTS = Path(__file__).resolve().parent / "results"


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA); nothing on the CPU."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def paired_seconds(first: Callable[[], None], second: Callable[[], None], rounds: int, warmup: int,
                   sync: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """Seconds of ``rounds`` calls of each, after ``warmup`` calls of each: every round times one
    call of both, the order alternating, so machine load hits both alike. ``sync`` runs before
    and after each timed call (the device's queue drained)."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            sync()
            start = time.perf_counter()
            (first, second)[i]()
            sync()
            times[i].append(time.perf_counter() - start)
    return times


def ratio_summary(fast: list[float], slow: list[float]) -> dict[str, float]:
    """The paired figure of two timed series: the median of the per-round ratios ``slow / fast``
    (``speedup``; > 1 means ``fast`` is faster) and their range (``ratio_min``, ``ratio_max``)."""
    ratios = [b / a for a, b in zip(fast, slow)]
    return {"speedup": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def native_kernels() -> str:
    """Whether invflow's native CPU conditioner kernels run (built or loaded here, so a failure shows):
    ``on``, ``off`` (``INVFLOW_NATIVE_KERNELS=0``) or ``unavailable (why)``."""
    from invflow.layers import conv_conditioner_kernels as native

    if not native.enabled():
        return f"off ({native.ENV_SWITCH}=0)"
    return "on" if native.kernels() is not None else f"unavailable ({native.failure()})"


def environment(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """What a result depends on: torch version, device, threads, whether invflow's native CPU
    kernels ran (CPU), and the command to reproduce it."""
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
        **({"native_kernels": native_kernels()} if device.type == "cpu" else {}),
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


def invflow_cli(*args: str) -> str:
    """Run the CLI, echo and return its stdout; a failure stops the script with its stderr."""
    done = subprocess.run([sys.executable, "-m", "invflow", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"invflow {' '.join(args)} failed:\n{done.stderr}")
    print(done.stdout.strip())
    return done.stdout


def train_run(preset: str, out: Path, data_dir: str | None = None, *settings: str) -> tuple[Path, float]:
    """Train (or resume, or skip a finished) run of ``preset`` in ``out``, with ``--set`` values
    ``settings``; returns the run and the wall seconds spent now."""
    start = time.perf_counter()
    if not RunDir(out).results.is_file():
        resume = ["--resume"] if RunDir(out).checkpoints.is_dir() else []
        data = ["--data-dir", data_dir] if data_dir else []
        sets = [arg for value in settings for arg in ("--set", value)]
        invflow_cli("train", preset, "--out", str(out), *data, *sets, *resume)
    return out, time.perf_counter() - start
