"""The Flow contract (docs/architecture.md section 2) and its composition."""
from __future__ import annotations

import math

from torch import Tensor, nn


class Flow(nn.Module):
    """An invertible map ``x -> z`` with the log-determinant of its Jacobian.

    ``forward(x)`` returns ``(z, logdet)`` where ``logdet = log|det dz/dx|`` per sample, shape
    ``(batch,)`` in the dtype and on the device of ``x``. ``inverse(z)`` returns ``(x, logdet)``
    with ``logdet = log|det dx/dz| = −log|det dz/dx|`` at ``x`` (the convention of nflows'
    transforms). ``inverse_without_logdet(z)`` returns ``x`` alone; layers whose inverse log-det
    costs an extra pass (residual blocks) override it, so sampling does not pay for it.
    ``layer_name`` is the layer's place in a model (``flow.flows.0.flows.3``), set by
    ``name_layers``, so errors and reports can say which layer they mean.
    """

    layer_name: str = ""

    def describe(self) -> str:
        """``"flow.flows.3 (ActNorm)"``, or the class name of a layer outside a model."""
        return f"{self.layer_name} ({type(self).__name__})" if self.layer_name else type(self).__name__

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse_without_logdet(self, z: Tensor) -> Tensor:
        """``x = f^{-1}(z)`` without its log-det: what sampling needs."""
        return self.inverse(z)[0]


def name_layers(root: nn.Module) -> None:
    """Set ``layer_name`` of every ``Flow`` under ``root`` to its qualified module name."""
    for name, module in root.named_modules():
        if isinstance(module, Flow) and name:
            module.layer_name = name


def zero_logdet(x: Tensor) -> Tensor:
    """A ``(batch,)`` log-det accumulator on the device and in the dtype of ``x``."""
    return x.new_zeros(x.shape[0])


class SequentialFlow(Flow):
    """Composition ``f_n ∘ … ∘ f_1``: log-dets add (chain rule), the inverse runs backwards."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(x)
        for flow in self.flows:
            x, ld = flow(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(z)
        for flow in reversed(self.flows):
            z, ld = flow.inverse(z)
            logdet = logdet + ld
        return z, logdet

    def inverse_without_logdet(self, z: Tensor) -> Tensor:
        for flow in reversed(self.flows):
            z = flow.inverse_without_logdet(z)
        return z

    def __len__(self) -> int:
        return len(self.flows)

    def __getitem__(self, index: int) -> Flow:
        return self.flows[index]


class InverseFlow(Flow):
    """The inverse ``f^{-1}`` of a flow, with ``log|det J_{f^{-1}}(z)| = -log|det J_f(f^{-1}(z))|``:
    ``forward`` is ``f.inverse`` and ``inverse`` is ``f.forward``, one pass each."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(x)


class Flatten(Flow):
    """Reshape ``(B, *shape)`` to ``(B, prod(shape))``; volume preserving."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, type(self).__name__)
        return x.reshape(x.shape[0], -1), zero_logdet(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(z, (math.prod(self.shape),), f"{type(self).__name__}.inverse")
        return z.reshape(z.shape[0], *self.shape), zero_logdet(z)


def check_shape(x: Tensor, expected: tuple[int | None, ...], where: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, *expected)``; ``None`` entries match any size."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{where}: expected a tensor, got {type(x).__name__}")
    want = "(B, " + ", ".join("*" if s is None else str(s) for s in expected) + ")"
    if x.dim() != len(expected) + 1:
        raise ValueError(
            f"{where}: expected a tensor of shape {want}, got rank {x.dim()} shape {tuple(x.shape)}"
        )
    for got, exp in zip(x.shape[1:], expected):
        if exp is not None and got != exp:
            raise ValueError(f"{where}: expected shape {want}, got {tuple(x.shape)}")


def check_image(x: Tensor, channels: int | None, where: str, divisible_by: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, H, W)`` with H, W divisible by
    ``divisible_by``."""
    check_shape(x, (channels, None, None), where)
    h, w = x.shape[-2:]
    if h % divisible_by or w % divisible_by:
        raise ValueError(
            f"{where}: spatial size {h}x{w} is not divisible by the squeeze factor {divisible_by}"
        )
