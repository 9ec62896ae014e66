"""The device that the device-aware tests run on (``@pytest.mark.device``): ``--device`` on the
pytest command line or ``INVFLOW_TEST_DEVICE`` (``cpu`` by default), so the same tests run on
the CPU in CI and on a GPU in ``benchmarks/gpu_check.py``."""
from __future__ import annotations

import os

import torch

ENV = "INVFLOW_TEST_DEVICE"


def test_device() -> torch.device:
    """The device named by ``INVFLOW_TEST_DEVICE``; one that is not usable here is a one-line error."""
    name = os.environ.get(ENV, "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise RuntimeError(f"{ENV}={name!r} is not a torch device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{ENV}={name!r} but this machine has no usable CUDA device")
    return device


test_device.__test__ = False  # a helper, not a test pytest should collect

TEST_DEVICE = test_device()
