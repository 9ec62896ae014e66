"""A residual net ``g`` written as an explicit chain, so ``torch.compile`` can run a residual
block's log-det series (Chen et al. 2019, Theorems 1 and 2).

The eager block differentiates ``g``'s vector–Jacobian products again (double backward), which
``torch.compile``'s aot_autograd cannot trace. For the nets of Residual Flows,
``g = f_n ∘ … ∘ f_1`` with maps ``h ↦ W h + b`` (a stride-1 convolution or a linear layer, ``W``
spectrally normalised), context shifts ``h ↦ h + s(c)`` and LipSwish activations ``φ``, the
product is written out instead:

    ``uᵀ J_g(x) = (…((u W_n) ⊙ φ'(h_{n-1})) W_{n-1} …) ⊙ φ'(h_0)``

where ``h_i`` are the inputs of the activations (``u W`` a transposed convolution, computed as a
convolution with the flipped, transposed kernel, or ``u @ W``). Four fixed-shape functions are
compiled (each traced once per input shape, whatever the drawn series length, since the series
calls them in a Python loop):

- :func:`chain_forward`: ``(g(x), h_1, …)``, differentiable by first-order autograd;
- :func:`chain_derivatives` and :func:`chain_vjp`: ``φ'(h_i)`` once, then each series term as one
  product with no graph (the power series' terms);
- :func:`chain_live_vjp`: the product with ``φ'`` recomputed differentiably from ``h_i`` — the
  Neumann surrogate ``<wᵀ J_g, v>`` and backprop through the series need its gradient in ``x``,
  the weights and β, which is first-order autograd of this function, so aot_autograd compiles it.

The weights are normalised (``SpectralNormConv2d.normalized_weight``, with its power iteration),
β = softplus(ρ) taken and the context shifts computed eagerly, outside the compiled functions:
they are small, and their gradients reach the raw parameters by ordinary autograd.

Because the product reads only the states ``h_i``, the weights and β, the Neumann gradient taken
in the forward (appendix C) can be taken on detached copies of them (:meth:`ChainPass.detached`)
and passed on to the originals in the model's backward: ``g``'s forward graph is then traversed
once, by that backward, where the eager block traverses it twice.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextBias
from invflow.residual import narrow_conv
from invflow.residual.activations import LipSwish, lipswish_derivative, lipswish_reference
from invflow.residual.lipschitz import SpectralNormConv2d, SpectralNormLinear

ACT, CONV, LINEAR, SHIFT = "act", "conv", "linear", "shift"
BACKENDS = ("inductor", "aot_eager")


Tensors = Sequence[Tensor]


def chain_forward(kinds: tuple[str, ...], x: Tensor, weights: Tensors, biases: Sequence[Tensor | None],
                  betas: Tensors, shifts: Tensors, channels_last: bool = False
                  ) -> tuple[Tensor, list[Tensor]]:
    """``(g(x), [h_i])``: the net's output and the input of every activation after the first
    layer (an activation first reads ``x`` itself, which the caller holds); ``channels_last``: the
    states' layout (:func:`invflow.residual.narrow_conv.compiled_conv2d`)."""
    h, states = x, []
    i_map = i_act = i_shift = 0
    for position, kind in enumerate(kinds):
        if kind == ACT:
            if position:
                states.append(h)
            h = lipswish_reference(h, betas[i_act])
            i_act += 1
        elif kind == SHIFT:
            h = h + shifts[i_shift]
            i_shift += 1
        else:
            weight, bias = weights[i_map], biases[i_map]
            h = (narrow_conv.compiled_conv2d(h, weight, bias, weight.shape[-1] // 2, channels_last)
                 if kind == CONV else F.linear(h, weight, bias))
            i_map += 1
    return h, states


def _transposed(kind: str, u: Tensor, weight: Tensor, channels_last: bool) -> Tensor:
    """``u W``: the vector–Jacobian product of one map."""
    if kind == CONV:
        return narrow_conv.compiled_conv2d(u, narrow_conv.transposed_weight(weight), None,
                                           weight.shape[-1] // 2, channels_last)
    return u @ weight


def chain_derivatives(states: Tensors, betas: Tensors) -> list[Tensor]:
    """``φ'(h_i)`` for every activation (the series' products then only multiply)."""
    return [lipswish_derivative(h, beta) for h, beta in zip(states, betas)]


def chain_vjp(kinds: tuple[str, ...], u: Tensor, weights: Tensors, derivatives: Tensors,
              channels_last: bool = False) -> Tensor:
    """``uᵀ J_g(x)`` from the stored ``φ'(h_i)`` (module docstring)."""
    i_map, i_act = len(weights), len(derivatives)
    for kind in reversed(kinds):
        if kind == ACT:
            i_act -= 1
            u = u * derivatives[i_act]
        elif kind != SHIFT:
            i_map -= 1
            u = _transposed(kind, u, weights[i_map], channels_last)
    return u


def chain_live_vjp(kinds: tuple[str, ...], u: Tensor, weights: Tensors, states: Tensors,
                   betas: Tensors, channels_last: bool = False) -> Tensor:
    """``uᵀ J_g(x)`` differentiable in ``u``, the weights, the states ``h_i`` and β."""
    return chain_vjp(kinds, u, weights, chain_derivatives(states, betas), channels_last)


@functools.cache
def compiled(backend: str) -> tuple[Callable, Callable, Callable, Callable]:
    """``(forward, derivatives, vjp, live_vjp)`` compiled by ``backend`` (one set per process:
    dynamo keys its cache by shapes and ``kinds``, so blocks of equal structure share code)."""
    if backend not in BACKENDS:
        raise ValueError(f"compile backend must be one of {BACKENDS}, got {backend!r}")
    return tuple(torch.compile(fn, backend=backend)  # type: ignore[return-value]
                 for fn in (chain_forward, chain_derivatives, chain_vjp, chain_live_vjp))


def chain_kinds(g: nn.Module) -> tuple[str, ...]:
    """The layer kinds of ``g`` (a chain of LipSwish, spectrally normalised convolutions or linear
    maps and context shifts), or a ``ValueError`` naming the first layer that is none of them."""
    kinds = []
    layers = list(g) if isinstance(g, nn.Sequential) else [g]
    for index, layer in enumerate(layers):
        kind = ({LipSwish: ACT, SpectralNormConv2d: CONV, SpectralNormLinear: LINEAR, ContextBias: SHIFT}
                .get(type(layer)))
        if kind is None:
            raise ValueError("the compiled residual series needs g to be a chain of LipSwish, "
                             "SpectralNormConv2d, SpectralNormLinear and ContextBias layers; "
                             f"layer {index} is {type(layer).__name__}")
        if kind == CONV and (layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1):
            raise ValueError("the compiled residual series needs stride-1, undilated, ungrouped "
                             f"convolutions; layer {index} is {layer}")
        kinds.append(kind)
    if LINEAR not in kinds and CONV not in kinds:
        raise ValueError("the compiled residual series needs g to contain a linear map or a convolution")
    return tuple(kinds)


@dataclass(frozen=True)
class ChainPass:
    """One forward of the chain: ``gx = g(x, c)``; ``vjp(u) = uᵀ J_g(x)`` without a graph (the
    series' terms); ``live_vjp(u)``, the same product differentiable in ``u``, ``x``, ``g``'s
    parameters and ``c``, through exactly the tensors it reads: the activations' inputs
    ``states`` (per sample) and the ``operands`` (normalised weights and β, shared)."""

    gx: Tensor
    vjp: Callable[[Tensor], Tensor]
    product: Callable[[Tensor, list[Tensor], list[Tensor]], Tensor]
    states: list[Tensor]
    operands: list[Tensor]

    def live_vjp(self, u: Tensor) -> Tensor:
        return self.product(u, self.states, self.operands)

    def detached(self) -> tuple[Callable[[Tensor], Tensor], tuple[list[Tensor], list[Tensor], list[Tensor]]]:
        """``live_vjp`` on detached leaf copies of the states and operands, and the cut
        ``(states, operands, originals)`` for :func:`~invflow.residual.logdet.backward_in_forward`:
        its derivatives stop at the leaves (partial derivatives), to be passed on to the originals."""
        states = [t.detach().requires_grad_(True) for t in self.states]
        operands = [t.detach().requires_grad_(True) for t in self.operands]
        cut = (states, operands, [*self.states, *self.operands])
        return (lambda u: self.product(u, states, operands)), cut


class CompiledChain:
    """One block's ``g`` as the compiled chain: ``forward(x, context)`` returns ``g(x)`` and the two
    vector–Jacobian products the series needs (module docstring)."""

    def __init__(self, g: nn.Module, backend: str = "inductor") -> None:
        self.kinds = chain_kinds(g)
        self.layers = list(g) if isinstance(g, nn.Sequential) else [g]
        self.backend = backend
        compiled(backend)  # an unknown backend is refused here, not at the first forward

    def _channels_last(self, x: Tensor) -> bool:
        """Whether the states are laid out channels-last (any convolution asks for it)."""
        return x.dim() == 4 and any(getattr(m, "channels_last", False) for m in self.layers)

    def _operands(self, x: Tensor, context: Tensor | None):
        weights, biases, betas, shifts = [], [], [], []
        channels_last = self._channels_last(x)
        for layer, kind in zip(self.layers, self.kinds):
            if kind == ACT:
                betas.append(layer.beta)
            elif kind == SHIFT:
                shifts.append(layer.bias(context, x.dim()))
            else:
                weight = layer.normalized_weight(x)
                if channels_last:
                    weight = weight.contiguous(memory_format=torch.channels_last)
                weights.append(weight)
                biases.append(layer.bias)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, weights, biases, betas, shifts

    def forward(self, x: Tensor, context: Tensor | None) -> ChainPass:
        """``g(x, c)`` and its vector–Jacobian products at ``x`` (:class:`ChainPass`)."""
        forward, derivatives, vjp, live_vjp = compiled(self.backend)  # looked up: the chain pickles
        kinds = self.kinds
        x_in, weights, biases, betas, shifts = self._operands(x, context)
        channels_last = self._channels_last(x)
        gx, hidden = forward(kinds, x_in, weights, biases, betas, shifts, channels_last)
        states = ([x_in] if kinds[0] == ACT else []) + list(hidden)
        with torch.no_grad():
            fixed_weights = [w.detach() for w in weights]
            scales = derivatives([h.detach() for h in states], [b.detach() for b in betas])

        layout = torch.channels_last if x_in.dim() == 4 and x_in.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format

        def plain(u: Tensor) -> Tensor:
            with torch.no_grad():
                return vjp(kinds, u.contiguous(memory_format=layout), fixed_weights, scales, channels_last)

        n_weights = len(weights)

        def product(u: Tensor, states: list[Tensor], operands: list[Tensor]) -> Tensor:
            return live_vjp(kinds, u.contiguous(memory_format=layout), operands[:n_weights], states,
                            operands[n_weights:], channels_last)

        return ChainPass(gx, plain, product, states, [*weights, *betas])
