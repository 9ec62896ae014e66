"""Non-finite samples are reported, never returned or written silently.

When ``f^{-1}(z)`` is not finite for some ``z``, ``first_nonfinite_layer`` runs the inverse again
on those latents only, watching every layer, and names the first layer whose output is
non-finite although its input was finite: where the inverse blew up.
"""
from __future__ import annotations

from torch import Tensor

from invflow.core.flow import Flow, inverse_of


class NonFiniteSamples(RuntimeError):
    """``count`` of ``total`` samples are NaN or ±inf; ``samples`` holds all of them, ``layer`` the
    first layer (in the order the inverse runs) that produced a non-finite value from finite input."""

    def __init__(
        self, count: int, total: int, layer: str, temperature: float | None, samples: Tensor
    ) -> None:
        self.count, self.total, self.layer, self.samples = count, total, layer, samples
        what = f"samples at temperature {temperature:g}" if temperature is not None else "decoded latents"
        super().__init__(f"{count} of {total} {what} are non-finite (NaN or inf); "
                         f"the inverse first produced them in layer {layer}; a lower temperature, or more "
                         "training, may avoid it")


def nonfinite_rows(x: Tensor) -> Tensor:
    """Boolean ``(B,)``: which samples hold a NaN or ±inf."""
    return ~x.isfinite().reshape(x.shape[0], -1).all(dim=1)


def first_nonfinite_layer(flow: Flow, z: Tensor, context: Tensor | None = None) -> str:
    """Rerun ``flow.inverse(z, context)`` watching every ``Flow`` inside it; describe the first one that
    turned a finite input row into a non-finite output row (``"unknown"`` if none does again)."""
    culprits: list[str] = []
    watched = [m for m in flow.modules() if isinstance(m, Flow)]

    def watch(module: Flow):
        inverse = module.inverse

        def watched_inverse(y: Tensor, *context: Tensor) -> tuple[Tensor, Tensor]:
            x, logdet = inverse(y, *context)
            if (
                not culprits
                and isinstance(x, Tensor)
                and bool((nonfinite_rows(x) & ~nonfinite_rows(y)).any())
            ):
                culprits.append(module.describe())
            return x, logdet

        return watched_inverse

    try:
        for module in watched:
            module.inverse = watch(module)  # an instance attribute shadowing the method, removed below
        inverse_of(flow, z, context)
    finally:
        for module in watched:
            del module.inverse
    return culprits[0] if culprits else "unknown"
