"""Native CPU kernels of Glow's fused conditioner (``conv_conditioner._GemmConditioner``), built from
``conv_conditioner_kernels.cpp`` on first use by ``torch.utils.cpp_extension`` and cached.

Why hand-written: the Python Function makes about 120 operator calls per conditioner (forward and
backward), 40 of them the nine window adds of each col2im, and passes over memory that no PyTorch
operator fuses (the ReLU's backward and its bias gradient; col2im, bias and layout change). The
C++ version computes the same products (the same oneDNN and BLAS calls) with the glue as single
loops: a whole MNIST Glow training step ran 2–8% faster on this project's 2-core CPU
(``benchmarks/fused_conditioner.py``). The Python Function stays the reference and the fallback: it
runs wherever the kernels are off or cannot be built, and the tests compare the two.

- ``INVFLOW_NATIVE_KERNELS=0`` turns the kernels off (the Python Function runs).
- The build (about 20 s, needs a C++ compiler and ninja) happens once per source, torch and Python
  version; the library lands in ``$INVFLOW_KERNEL_CACHE`` (default: ``kernels`` in invflow's cache,
  ``$INVFLOW_CACHE`` or ``~/.cache/invflow``), written under a temporary name and renamed into place,
  so a killed build or two processes building at once leave no broken file.
- If the build fails, one warning names the reason and the Python Function runs.
- ``invflow info`` says whether they are built; ``invflow info --build-kernels`` builds them ahead of
  time (e.g. on a cluster's login node, for jobs that share its home directory).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

ENV_SWITCH = "INVFLOW_NATIVE_KERNELS"
ENV_CACHE = "INVFLOW_KERNEL_CACHE"
KERNELS_DIR = "kernels"  # in invflow's cache, beside the data sets
SOURCE = Path(__file__).with_suffix(".cpp")
CFLAGS = ("-O3", "-fopenmp")  # OpenMP: ATen's parallel_for, on the libgomp torch already loaded
LDFLAGS = ("-fopenmp",)

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: ModuleType | None = None
_failure: str | None = None  # why the kernels are unavailable, once a load was tried


def enabled() -> bool:
    """Whether the environment allows the kernels (``INVFLOW_NATIVE_KERNELS`` is not ``0``)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built libraries are kept: ``$INVFLOW_KERNEL_CACHE``, else ``kernels`` in invflow's cache."""
    from invflow.data.download import cache_dir as invflow_cache

    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    return invflow_cache(KERNELS_DIR)


def build_key() -> str:
    """A digest of what the library depends on: the source, the flags, torch, Python and the machine
    architecture. A library built for another key is never loaded."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (*CFLAGS, *LDFLAGS, torch.__version__, sys.version, platform.machine()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _import(name: str, path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _build(name: str, target: Path) -> ModuleType:
    from torch.utils.cpp_extension import load

    target.parent.mkdir(parents=True, exist_ok=True)
    _log.info("compiling the CPU conditioner kernels once (about 20 s) into %s", target.parent)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        module = load(name, [str(SOURCE)], extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
                      build_directory=str(scratch), verbose=False)
        os.replace(scratch / f"{name}.so", target)  # atomic: readers see the old file or the whole new one
        return module
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def library_path() -> tuple[str, Path]:
    """The module name and library file of this build (:func:`build_key`)."""
    name = f"invflow_conditioner_kernels_{build_key()}"
    return name, cache_dir() / f"{name}.so"


def _load() -> ModuleType:
    name, target = library_path()
    if target.exists():
        try:
            return _import(name, target)
        except ImportError as err:  # e.g. a library of another build with this name: rebuild it
            _log.info("rebuilding the CPU conditioner kernels (%s)", err)
    return _build(name, target)


def _first_error_line(message: str) -> str:
    """The line of a build log that says what went wrong: the first compiler ``error:``, else the last
    line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return (errors or lines or [""])[0 if errors else -1]


def kernels() -> ModuleType | None:
    """The compiled kernels, built on the first call; ``None`` where ``INVFLOW_NATIVE_KERNELS=0`` or
    they could not be built or loaded (then one warning says why)."""
    global _loaded, _failure
    if not enabled():
        return None
    if _loaded is not None or _failure is not None:
        return _loaded
    with _lock:
        if _loaded is None and _failure is None:
            try:
                _loaded = _load()
            except Exception as err:  # any build or load failure: fall back, say why once
                _failure = f"{type(err).__name__}: {_first_error_line(str(err))}"
                warnings.warn(f"the CPU conditioner kernels are unavailable ({_failure}); using the Python "
                              f"implementation (Glow training steps 2-8% slower). Set {ENV_SWITCH}=0 to "
                              "skip the build.", RuntimeWarning, stacklevel=2)
    return _loaded


def state() -> str:
    """One line for ``invflow info``: off, unavailable (why), built (where) or not built yet."""
    if not enabled():
        return f"off ({ENV_SWITCH}=0)"
    if _failure is not None:
        return f"unavailable ({_failure}); the Python implementation runs"
    _, path = library_path()
    if path.is_file():
        return f"built: {path}"
    return ("not built yet: built on first use (about 20 s, needs a C++ compiler), or now by "
            "`invflow info --build-kernels`")


def failure() -> str | None:
    """Why the kernels are unavailable, if a load was tried and failed."""
    return _failure

