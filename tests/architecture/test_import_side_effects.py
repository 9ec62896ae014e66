"""Importing invflow changes nothing outside it: no matplotlib backend is chosen and pyplot's
global figure state is never loaded (the plots draw on ``matplotlib.figure.Figure``); and the
library does not write to the terminal itself: it warns (``warnings``) or logs (``logging``), and
the CLI decides what to show."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import invflow

SRC = Path(invflow.__file__).parent
# the command line, and the opt-in progress display (``progress=``; tqdm's bar on a terminal)
MAY_PRINT = {"cli.py", "train/progress.py"}

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


def test_only_the_cli_and_the_progress_display_print() -> None:
    printing = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), name)):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Name) and call.id == "print" and name not in MAY_PRINT:
                printing.append(f"{name}:{node.lineno}")
            stream = call.value if isinstance(call, ast.Attribute) and call.attr == "write" else None
            if isinstance(stream, ast.Attribute) and stream.attr in ("stdout", "stderr"):
                printing.append(f"{name}:{node.lineno}")
    assert not printing, f"library code writes to the terminal (warn or log instead): {printing}"


def test_training_as_a_library_call_logs_instead_of_printing(tmp_path: Path, capsys, caplog) -> None:
    """``invflow.train.loop.train`` with ``progress=False`` writes nothing to the terminal; its
    notices ("resuming …", changed settings) are log records of the ``invflow`` loggers."""
    import logging

    from invflow.models import load_config
    from invflow.train.loop import train

    small = {"train.steps": 2, "train.eval_every": 2, "train.sample_every": 100, "train.checkpoint_every": 2,
             "train.tensorboard": False, "model.steps_per_level": 1, "data.toy_samples": 256,
             "data.batch_size": 32, "train.eval_batches": 1}
    train(load_config("glow-toy-rings", small), tmp_path / "run", progress=False)
    with caplog.at_level(logging.INFO, logger="invflow"):
        train(load_config("glow-toy-rings", {**small, "train.steps": 4, "train.lr": 0.002}), tmp_path / "run",
              resume=True, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert f"resuming {tmp_path / 'run'} from" in caplog.text
    assert "changed from step 2: train.steps 2 -> 4, train.lr" in caplog.text
