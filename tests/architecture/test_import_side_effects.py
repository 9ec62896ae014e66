"""Importing invflow changes nothing outside it (issue 27): no matplotlib backend is chosen and
pyplot's global figure state is never loaded; the plots draw on ``matplotlib.figure.Figure``."""
from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import matplotlib
backend = lambda: dict.__getitem__(matplotlib.rcParams, "backend")  # reading rcParams["backend"] loads pyplot
before = backend()
import invflow
for info in pkgutil.walk_packages(invflow.__path__, "invflow."):
    if info.name != "invflow.__main__":
        importlib.import_module(info.name)
assert backend() == before, (before, backend())
assert "matplotlib.pyplot" not in sys.modules, "a module imports matplotlib.pyplot"
print("ok")
"""


def test_importing_every_module_chooses_no_backend_and_loads_no_pyplot() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
