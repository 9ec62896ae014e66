"""A toy model family, the whole of it: a config dataclass and a builder (one file).

Registering it is one line, ``FAMILIES["toy"] = Family(ToyConfig, build)``; the training loop,
evaluation, checkpoints and the CLI then handle it without knowing its name.
"""
from __future__ import annotations

from dataclasses import dataclass

from invflow.config import DataConfig, positive
from invflow.core.distributions import StandardNormal
from invflow.core.flow import SequentialFlow
from invflow.core.model import FlowModel
from invflow.data.registry import input_shape
from invflow.layers.actnorm import ActNorm
from invflow.layers.coupling import AffineCoupling


@dataclass
class ToyConfig:
    """``model`` section of the toy family."""

    SECTION = "model"
    steps: int = 2
    hidden: int = 16

    def validate(self) -> None:
        positive(self, "steps", "hidden")


class ToyModel(FlowModel):
    """Declares through a hook what it does not support; the loop reads the hook, not the name."""

    compile_unsupported = "the toy family opts out of torch.compile to show the hook"


def build(cfg: ToyConfig, data: DataConfig) -> ToyModel:
    """ActNorm → affine coupling, ``cfg.steps`` times, on 2D vectors."""
    shape = input_shape(data)
    if len(shape) != 1:
        raise ValueError("the toy family needs vector (2D toy) data")
    flows = []
    for k in range(cfg.steps):
        flows += [ActNorm(shape[0], vector=True), AffineCoupling(shape, cfg.hidden, swap=k % 2 == 1)]
    return ToyModel(SequentialFlow(*flows), StandardNormal(shape), shape)
