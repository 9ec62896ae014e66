"""The autouse ``seeded_random_state`` fixture (tests/conftest.py): each test starts from its own
seed, and what it draws does not leak into the next test."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch


def _expected_first_draw(request: pytest.FixtureRequest) -> torch.Tensor:
    seed = zlib.crc32(request.node.nodeid.encode())
    return torch.rand((), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("draws", [1, 1000])
def test_each_test_starts_from_its_own_seed(draws: int, request: pytest.FixtureRequest) -> None:
    assert torch.equal(torch.rand(()), _expected_first_draw(request))
    torch.rand(draws)  # whatever this test draws, the next one starts from its own seed
    np.random.rand(draws)


def test_numpy_is_seeded_too(request: pytest.FixtureRequest) -> None:
    seed = zlib.crc32(request.node.nodeid.encode())
    assert np.random.rand() == np.random.RandomState(seed).rand()
