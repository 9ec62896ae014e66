"""``invflow info``: the environment a bug report needs (versions, devices, distributed
back-ends, threads, cache and data locations), as ``(name, value)`` rows."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch

from invflow.data.download import CACHE_ENV, MIRROR_ENV, cache_dir
from invflow.layers.conv_conditioner_kernels import KERNELS_DIR
from invflow.layers.conv_conditioner_kernels import state as kernel_state


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cuda_rows() -> list[tuple[str, str]]:
    if not torch.cuda.is_available():
        why = f"torch built with CUDA {torch.version.cuda}, but no GPU is visible" if torch.version.cuda \
            else "this torch is a CPU-only build"
        return [("CUDA available", f"no ({why})")]
    rows = [("CUDA available", f"yes, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        rows.append((f"cuda:{i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                  f"compute capability {props.major}.{props.minor}"))
    return rows


def _distributed_rows() -> list[tuple[str, str]]:
    import torch.distributed as dist

    if not dist.is_available():
        return [("torch.distributed", "not available in this torch build")]
    nccl = "yes" if dist.is_nccl_available() else "no"
    if dist.is_nccl_available() and torch.cuda.is_available():
        nccl += f" (NCCL {'.'.join(map(str, torch.cuda.nccl.version()))})"
    return [("NCCL available", nccl), ("gloo available", "yes" if dist.is_gloo_available() else "no")]


def _data_rows() -> list[tuple[str, str]]:
    root = cache_dir("")
    cached = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != KERNELS_DIR) \
        if root.is_dir() else []
    source = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else f"default; set ${CACHE_ENV} to move it"
    return [
        ("cache directory", f"{root} ({source}; {'exists' if root.is_dir() else 'not created yet'})"),
        ("data sets in the cache", ", ".join(cached) or "none"),
        (
            "download mirror",
            os.environ.get(MIRROR_ENV) or f"the official sites (set ${MIRROR_ENV} to override)",
        ),
    ]


def environment_rows() -> list[tuple[str, str]]:
    """Everything ``invflow info`` prints, in order."""
    from invflow.version import __version__

    mps = getattr(torch.backends, "mps", None)
    rows = [("invflow", __version__), ("python", sys.version.split()[0]), ("platform", platform.platform()),
            ("torch", torch.__version__), *_cuda_rows()]
    if mps is not None and mps.is_available():
        rows.append(("MPS available", "yes"))
    rows += _distributed_rows()
    rows += [
        ("CPU cores", str(os.cpu_count())),
        ("torch threads", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
    ]
    rows += _data_rows()
    rows.append(("CPU conditioner kernels", kernel_state()))
    rows += [
        (name, _package_version(name)) for name in ("numpy", "scipy", "matplotlib", "pillow", "tensorboard")
    ]
    return rows


def format_rows(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
