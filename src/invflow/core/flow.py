"""The Flow contract (docs/architecture.md section 2) and its composition."""
from __future__ import annotations

import math

from torch import Tensor, nn


class Flow(nn.Module):
    """An invertible map ``x -> z`` with the log-determinant of its Jacobian, optionally given a
    context ``c``.

    ``forward(x, context)`` returns ``(z, logdet)`` where ``logdet = log|det ∂z/∂x|`` per sample
    (``c`` held fixed), shape ``(batch,)`` in the dtype and on the device of ``x``.
    ``inverse(z, context)`` returns ``(x, logdet)`` with ``logdet = log|det ∂x/∂z| = −log|det ∂z/∂x|``
    at ``x`` (the convention of nflows' transforms). ``inverse_without_logdet(z, context)`` returns
    ``x`` alone; layers whose inverse log-det costs an extra pass (residual blocks) override it, so
    sampling does not pay for it.

    ``context`` is ``None`` or a floating ``(batch, context_features)`` tensor
    (:mod:`invflow.core.context`); a layer built without context accepts it and ignores it, and
    a conditional layer refuses a missing or misshapen one.

    ``differentiable_inverse`` states whether autograd differentiates ``inverse`` correctly (to
    ``z``, the context and the parameters); ``FlowModel.rsample`` requires it of every layer.
    ``place`` says where the layer sits in the model's own terms (``"level 2, step 5"``), set by
    the model's builder with :func:`mark_place`; ``layer_name`` is its module path
    (``flow.flows.0.flows.3``), set by ``name_layers``. Errors and reports name a layer by both.
    """

    layer_name: str = ""
    place: str = ""
    differentiable_inverse: bool = True

    def describe(self) -> str:
        """``"level 2, step 5: ActNorm (flow.flows.1.flows.4)"``; without a place
        ``"flow.flows.3 (ActNorm)"``; the class name of a layer outside a model."""
        kind = type(self).__name__
        if self.place:
            return f"{self.place}: {kind}" + (f" ({self.layer_name})" if self.layer_name else "")
        return f"{self.layer_name} ({kind})" if self.layer_name else kind

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse_without_logdet(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``x = f^{-1}(z)`` without its log-det: what sampling needs."""
        return inverse_of(self, z, context)[0]


def mark_place(flows: list[Flow], place: str) -> list[Flow]:
    """Give ``flows`` and every layer inside them without a place yet the ``place`` (e.g.
    ``"level 2, step 5"``); returns ``flows``."""
    for flow in flows:
        for module in flow.modules():
            if isinstance(module, Flow) and not module.place:
                module.place = place
    return flows


def name_layers(root: nn.Module) -> None:
    """Set ``layer_name`` of every ``Flow`` under ``root`` to its qualified module name."""
    for name, module in root.named_modules():
        if isinstance(module, Flow) and name:
            module.layer_name = name


def first_nondifferentiable_inverse(root: nn.Module) -> Flow | None:
    """The first ``Flow`` under ``root`` (itself included) whose inverse autograd cannot
    differentiate, or ``None`` when every layer's can."""
    for module in root.modules():
        if isinstance(module, Flow) and not module.differentiable_inverse:
            return module
    return None


def forward_of(flow: Flow, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
    """``flow(x, context)``, or ``flow(x)`` without a context: a user's layer written as
    ``forward(self, x)`` keeps working wherever no context is passed."""
    return flow(x) if context is None else flow(x, context)


def inverse_of(flow: Flow, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
    """``flow.inverse(z, context)``, or ``flow.inverse(z)`` without a context (see ``forward_of``)."""
    return flow.inverse(z) if context is None else flow.inverse(z, context)


def inverse_without_logdet_of(flow: Flow, z: Tensor, context: Tensor | None) -> Tensor:
    """``flow.inverse_without_logdet(z, context)``, without the context when there is none."""
    return flow.inverse_without_logdet(z) if context is None else flow.inverse_without_logdet(z, context)


def zero_logdet(x: Tensor) -> Tensor:
    """A ``(batch,)`` log-det accumulator on the device and in the dtype of ``x``."""
    return x.new_zeros(x.shape[0])


class SequentialFlow(Flow):
    """Composition ``f_n ∘ … ∘ f_1``: log-dets add (chain rule), the inverse runs backwards. The
    context goes to every flow; without one, flows are called without it, so a user's layer
    written as ``forward(self, x)`` keeps working in unconditional models."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(x)
        for flow in self.flows:
            x, ld = forward_of(flow, x, context)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(z)
        for flow in reversed(self.flows):
            z, ld = inverse_of(flow, z, context)
            logdet = logdet + ld
        return z, logdet

    def inverse_without_logdet(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        for flow in reversed(self.flows):
            z = inverse_without_logdet_of(flow, z, context)
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

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return inverse_of(self.flow, z, context)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return forward_of(self.flow, x, context)


class Flatten(Flow):
    """Reshape ``(B, *shape)`` to ``(B, prod(shape))``; volume preserving."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_shape(x, self.shape, type(self).__name__)
        return x.reshape(x.shape[0], -1), zero_logdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
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
