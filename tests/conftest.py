"""Shared test fixtures: the tests directory on sys.path (for the harness), the real data dirs."""
from __future__ import annotations

import os
import random
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

# ../shared/data beside the project; INVFLOW_TEST_SHARED_DATA points elsewhere (e.g. nowhere, to run
# the suite as on a bare clone)
SHARED_DATA = Path(os.environ.get("INVFLOW_TEST_SHARED_DATA", TESTS_DIR.parent.parent / "shared" / "data"))
MNIST_DIR = SHARED_DATA / "mnist"
MNIST_SUBSET = TESTS_DIR / "data" / "mnist-subset"  # committed: 2,000 + 500 real digits

torch.set_num_threads(int(os.environ.get("INVFLOW_TEST_THREADS", "2")))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=None,
        help="device of the tests marked 'device' (default: $INVFLOW_TEST_DEVICE or cpu)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # before collection, so that tests/devices.py reads it when the test modules import it
    if config.getoption("--device"):
        os.environ["INVFLOW_TEST_DEVICE"] = config.getoption("--device")


@pytest.fixture(autouse=True)
def seeded_random_state(request: pytest.FixtureRequest):
    """zuko's habit: every test runs on forked random-number generators (torch's CPU generator,
    NumPy's and Python's global ones) seeded from its own id, so no test sees the draws another
    left behind, and running one test alone or in another order draws the same numbers."""
    seed = zlib.crc32(request.node.nodeid.encode())
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


@pytest.fixture
def device() -> torch.device:
    """The device of the device-aware tests (tests/devices.py)."""
    from devices import TEST_DEVICE

    return TEST_DEVICE


@pytest.fixture
def mnist_dir() -> Path:
    """Real MNIST: the full files beside the project (``../shared/data/mnist``) when they are
    there, else the committed subset (``tests/data/mnist-subset``), so learning tests run anywhere."""
    return MNIST_DIR if (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file() else MNIST_SUBSET


@pytest.fixture
def full_mnist_dir() -> Path:
    """The full MNIST files (for tests of the files themselves: counts, checksums, download); skips
    without them."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the full MNIST files are not at {MNIST_DIR} (the ../shared/data beside the project)")
    return MNIST_DIR

