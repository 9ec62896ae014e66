"""The shared layer registry: every flow layer is swept through the same brute-force checks.

Each module in ``tests/layer_cases/`` defines ``CASES: list[LayerCase]``. ``all_cases()``
collects them and ``tests/test_layer_harness.py`` runs the public checks of ``invflow.testing``
on every case in float64 (inverse(forward(x)) == x, log-det == log|det| of the autograd
Jacobian, per-sample independence, every parameter's gradient), for several contexts when the
case is conditional, and a ``ValueError`` on badly shaped input.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from devices import TEST_DEVICE
from torch import Tensor

from invflow import testing
from invflow.core.flow import Flow


def default_sampler(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def unit_interval_sampler(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Inputs strictly inside (0, 1), for layers defined on dequantized images."""
    return 0.05 + 0.9 * torch.rand(*shape, generator=generator, dtype=torch.float64)


@dataclass
class LayerCase:
    """One layer configuration to check.

    ``make`` builds the layer (float64 is applied by the harness); ``input_shape`` is per sample;
    ``at_shape`` builds it for another image shape;
    ``divisible_by`` > 1 adds an odd-spatial-size input to the bad inputs; ``bad_shapes`` adds
    more per-sample shapes that must raise ``ValueError``.
    """

    name: str
    make: Callable[[], Flow]
    input_shape: tuple[int, ...]
    divisible_by: int = 1
    batch: int = 3
    sampler: Callable[[tuple[int, ...], torch.Generator], Tensor] = default_sampler
    bad_shapes: list[tuple[int, ...]] = field(default_factory=list)
    inverse_atol: float = 1e-9
    logdet_atol: float = 1e-8
    check_wrong_channels: bool = True
    context_features: int = 0
    #: the layer for any per-sample ``(C, H, W)`` it accepts and the input shape to feed it, for the
    #: property tests over drawn shapes (tests/reliability/test_layer_properties.py); one case of each
    #: layer class gives it
    at_shape: Callable[[tuple[int, int, int]], tuple[Flow, tuple[int, ...]]] | None = None

    def __str__(self) -> str:
        return self.name

    def build(self, seed: int = 0) -> Flow:
        """The layer in float64 on the test device, in eval mode, with data-dependent
        initialisation done."""
        torch.manual_seed(seed)
        layer = self.make().double().to(TEST_DEVICE)
        gen = torch.Generator().manual_seed(seed + 1)
        x = self.sampler((8, *self.input_shape), gen).to(TEST_DEVICE)
        with torch.no_grad():  # data-dependent init (ActNorm)
            context = torch.zeros(8, self.context_features, dtype=torch.float64, device=TEST_DEVICE)
            layer(x) if not self.context_features else layer(x, context)
        randomize_parameters(layer, seed + 2)
        return layer.eval()

    def inputs(self, seed: int = 0) -> Tensor:
        gen = torch.Generator().manual_seed(seed + 3)
        return self.sampler((self.batch, *self.input_shape), gen).to(TEST_DEVICE)

    def contexts(self, draws: int = 3) -> list[Tensor | None]:
        """``[None]`` for an unconditional case; else ``draws`` different float64 contexts
        ``(batch, context_features)`` on the test device: one-hot labels, then Gaussian vectors."""
        if not self.context_features:
            return [None]
        labels = torch.arange(self.batch) % self.context_features
        out = [torch.nn.functional.one_hot(labels, self.context_features).double()]
        for seed in range(1, draws):
            gen = torch.Generator().manual_seed(100 + seed)
            out.append(torch.randn(self.batch, self.context_features, generator=gen, dtype=torch.float64))
        return [c.to(TEST_DEVICE) for c in out]

    def wrong_shapes(self) -> list[tuple[int, ...]]:
        shape = self.input_shape
        shapes = [shape[:-1], (*shape, 1)] if len(shape) > 1 else [(), (*shape, 1)]
        if self.check_wrong_channels:
            shapes.append((shape[0] + 1, *shape[1:]))
        if self.divisible_by > 1:
            shapes.append((*shape[:-2], shape[-2] + 1, shape[-1]))
            shapes.append((*shape[:-1], shape[-1] + 1))
        return shapes + list(self.bad_shapes)


def randomize_parameters(layer: Flow, seed: int) -> None:
    """Move every parameter away from its (often identity-like) init, so checks are not trivial.

    Zero-initialised parameters (output convs of coupling nets) get small random values, the
    others a small relative perturbation; layers may expose ``_harness_skip`` names to keep.
    """
    gen = torch.Generator().manual_seed(seed)
    skip = getattr(layer, "_harness_skip", ())
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if any(s in name for s in skip):
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
            p.add_(0.05 * noise * (p.abs() + 0.1))


def jacobian_logdet(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Per-sample ``log|det J|`` of ``fn`` by brute force (``invflow.testing.jacobian_logdet``)."""
    return testing.jacobian_logdet(lambda v, _: fn(v), x)


def all_cases() -> list[LayerCase]:
    """Every registered ``LayerCase`` from the modules of ``tests/layer_cases``."""
    import layer_cases

    cases: list[LayerCase] = []
    for info in sorted(pkgutil.iter_modules(layer_cases.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"layer_cases.{info.name}")
        cases.extend(module.CASES)
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise AssertionError(f"duplicate layer case names: {sorted(duplicates)}")
    return cases
