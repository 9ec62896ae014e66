"""The residual functions ``g`` of Residual Flows (Chen et al. 2019, sec. 6 and appendix E):
Lipschitz-constrained conv and MLP nets with LipSwish activations and per-hidden-state norm
orders (appendix D)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from invflow.core.context import ContextBias
from invflow.residual.activations import LipSwish
from invflow.residual.lipschitz import LearnedNormOrder, SpectralNormConv2d, SpectralNormLinear

NormOrders = str | float | Sequence[float] | None


def parse_norm_orders(norm_orders: NormOrders, n_layers: int) -> list[float]:
    """The ``n_layers + 1`` orders ``p_0 -> p_1 -> … -> p_n`` of a chain of ``n_layers`` maps.

    Accepts ``None`` (all 2), one order for all, a string of digits / ``"f"`` (∞) such as
    ``"2222"`` or ``"f"``, or a sequence of numbers. The input and output orders must agree
    (``p_0 = p_n``): the contraction ``Lip(g) < 1`` must hold in one norm.
    """
    if norm_orders is None:
        orders = [2.0]
    elif isinstance(norm_orders, str):
        try:
            orders = [math.inf if c == "f" else float(c) for c in norm_orders]
        except ValueError:
            raise ValueError(
                f"norm_orders string may hold digits and 'f' (for ∞), got {norm_orders!r}"
            ) from None
    elif isinstance(norm_orders, float | int):
        orders = [float(norm_orders)]
    else:
        orders = [float(p) for p in norm_orders]
    if len(orders) == 1:
        orders = orders * (n_layers + 1)
    if len(orders) != n_layers + 1:
        raise ValueError(
            f"norm_orders: expected 1 or {n_layers + 1} orders for {n_layers} layers, got {len(orders)}"
        )
    if any(p < 1 for p in orders):
        raise ValueError(f"norm_orders must all be >= 1, got {orders}")
    if orders[0] != orders[-1]:
        raise ValueError(f"norm_orders: input order {orders[0]} must equal output order {orders[-1]}")
    return orders


LearnOrders = bool | str  # False/"off", True/"per-state", or "shared"
LEARN_MODES = ("off", "per-state", "shared")


def learn_mode(learn: LearnOrders) -> str:
    """The canonical learned-order mode: ``True`` is the old spelling of ``per-state``."""
    mode = {False: "off", True: "per-state"}.get(learn, learn) if isinstance(learn, bool) else learn
    if mode not in LEARN_MODES:
        raise ValueError(f"learn_norm_orders must be true, false or one of {LEARN_MODES}, got {learn!r}")
    return mode


def _chain_orders(
    norm_orders: NormOrders, n_layers: int, learn: LearnOrders
) -> list[float | LearnedNormOrder]:
    """Per-layer boundary orders (Chen et al. 2019, app. D, "Learning norm orders").

    ``per-state``: every state has its own learned order, the output reusing the input's (the
    appendix's first setting, "all norm orders are free to change"); ``shared``: one learned order
    for every state of the block (its second setting, "each states within each residual block
    share the same order"), which needs a single initial order.
    """
    orders = parse_norm_orders(norm_orders, n_layers)
    mode = learn_mode(learn)
    if mode == "off":
        return list(orders)
    if mode == "shared":
        if len(set(orders)) != 1:
            raise ValueError(
                f"learn_norm_orders=shared learns one order per block; give one initial order, got {orders}"
            )
        return [LearnedNormOrder(orders[0])] * (n_layers + 1)
    learned: list[float | LearnedNormOrder] = [LearnedNormOrder(p) for p in orders[:-1]]
    return learned + [learned[0]]


class ResidualNet(nn.Sequential):
    """A chain of layers computing ``g(x, c)``: ``ContextBias`` layers read the context ``c``, every
    other layer ``x``'s state alone. Without ``ContextBias`` layers it is the plain ``nn.Sequential``
    (same state-dict keys); ``context_features`` is the context width it reads (0: none)."""

    def __init__(self, *layers: nn.Module, context_features: int = 0) -> None:
        super().__init__(*layers)
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, context) if isinstance(layer, ContextBias) else layer(x)
        return x


def _with_context(layers: list[nn.Module], context_features: int) -> ResidualNet:
    """``layers`` (maps interleaved with activations) with a ``ContextBias`` after every map but the
    last, i.e. on each hidden pre-activation, as wide as that map's output: the context shifts
    hidden states and never scales the path from ``x``, so ``Lip_x g(·, c)`` is the same for every
    ``c``."""
    if not context_features:
        return ResidualNet(*layers)
    out: list[nn.Module] = []
    maps = [layer for layer in layers if not isinstance(layer, LipSwish)]
    for layer in layers:
        out.append(layer)
        if any(layer is m for m in maps[:-1]):
            width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
            out.append(ContextBias(width, context_features))
    return ResidualNet(*out, context_features=context_features)


def conv_residual_net(
    channels: int,
    hidden: int,
    coeff: float = 0.98,
    norm_orders: NormOrders = None,
    learn_norm_orders: LearnOrders = False,
    kernel_size: int = 3,
    tol: float = 1e-4,
    max_iterations: int = 200,
    context_features: int = 0,
) -> ResidualNet:
    """LipSwish → 3x3 conv → LipSwish → 1x1 conv → LipSwish → 3x3 conv (Chen et al. 2019,
    appendix E); each conv operator has induced norm ≤ ``coeff``, so ``Lip(g) ≤ coeff³``.

    ``norm_orders``: 4 orders (input, two hidden states, output = input), see
    :func:`parse_norm_orders`; ``learn_norm_orders`` (``per-state``/``shared``, see
    :func:`_chain_orders`) learns them in (1.5, 2.5). ``context_features > 0`` adds a learned
    bias of the context to both hidden pre-activations (:func:`_with_context`).
    """
    p = _chain_orders(norm_orders, 3, learn_norm_orders)
    common = {"coeff": coeff, "tol": tol, "max_iterations": max_iterations}
    layers = [
        LipSwish(),
        SpectralNormConv2d(channels, hidden, kernel_size, domain=p[0], codomain=p[1], **common),
        LipSwish(),
        SpectralNormConv2d(hidden, hidden, 1, domain=p[1], codomain=p[2], **common),
        LipSwish(),
        SpectralNormConv2d(hidden, channels, kernel_size, domain=p[2], codomain=p[3], **common),
    ]
    return _with_context(layers, context_features)


def mlp_residual_net(
    dim: int,
    hidden: int,
    n_hidden: int = 3,
    coeff: float = 0.98,
    norm_orders: NormOrders = None,
    learn_norm_orders: LearnOrders = False,
    tol: float = 1e-4,
    max_iterations: int = 200,
    context_features: int = 0,
) -> ResidualNet:
    """Linear → (LipSwish → Linear) × ``n_hidden`` for vector data (the 2D experiments of
    Chen et al. 2019, appendix D): ``n_hidden`` hidden states of width ``hidden``,
    ``n_hidden + 1`` linear maps each with induced norm ≤ ``coeff``, ``n_hidden + 2`` orders.
    ``context_features > 0`` adds a learned bias of the context to every hidden pre-activation."""
    if n_hidden < 1:
        raise ValueError(f"n_hidden must be >= 1, got {n_hidden}")
    p = _chain_orders(norm_orders, n_hidden + 1, learn_norm_orders)
    widths = [dim] + [hidden] * n_hidden + [dim]
    layers: list[nn.Module] = []
    for i in range(n_hidden + 1):
        if i:
            layers.append(LipSwish())
        layers.append(
            SpectralNormLinear(
                widths[i],
                widths[i + 1],
                coeff=coeff,
                domain=p[i],
                codomain=p[i + 1],
                tol=tol,
                max_iterations=max_iterations,
            )
        )
    return _with_context(layers, context_features)
