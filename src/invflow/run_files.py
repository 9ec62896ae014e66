"""The layout of a run directory, in one place: the name of every file and folder a run holds
(docs/architecture.md, section 6). ``invflow.train.run_dir.RunDir`` gives one run's paths from
these names; modules below ``train`` (``viz``, ``data``) and the scripts use them directly. A
change of the layout is a change of this module (and the tests that spell the names)."""
from __future__ import annotations

import re

CONFIG = "config.yaml"  # the run's full config
ENVIRONMENT = "environment.json"  # versions, devices, command line
IDENTITY = "run.json"  # the run's random id, which every checkpoint carries
METRICS = "metrics.jsonl"  # one JSON record per logged step and per evaluation
RESULTS = "results.json"  # the best and the last test evaluation
CHANGES = "changes.jsonl"  # settings changed by a --resume
HELD_OUT = "test_split.json"  # an image-folder run's held-out files and their SHA-256
TENSORBOARD = "tb"  # TensorBoard event files
SAMPLES = "samples"  # sample grids / density plots
CHECKPOINTS = "checkpoints"  # step-N.pt files and last.pt
LAST_CHECKPOINT = "last.pt"
LAST_PATH = f"{CHECKPOINTS}/{LAST_CHECKPOINT}"  # the newest checkpoint, relative to the run
STEP_CHECKPOINT = re.compile(r"^step-(\d+)\.pt$")


def step_checkpoint(step: int) -> str:
    """The file name of step ``step``'s checkpoint: ``step-00001500.pt``."""
    return f"step-{step:08d}.pt"
