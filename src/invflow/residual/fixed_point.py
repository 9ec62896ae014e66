"""The fixed-point inverse of an invertible residual block ``y = x + g(x)``, ``Lip(g) < 1``
(Behrmann et al. 2019, alg. 1)."""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor


def fixed_point_inverse(
    g: Callable[[Tensor], Tensor],
    y: Tensor,
    atol: float | None = None,
    rtol: float | None = None,
    max_iter: int = 1000,
    where: str = "fixed_point_inverse",
) -> tuple[Tensor, int]:
    """Solve ``x + g(x) = y`` by ``x <- y - g(x)`` from ``x = y`` (Behrmann et al. 2019, alg. 1).

    Stops when the residual ``|x + g(x) - y| = |x_{new} - x|`` is at most
    ``atol + rtol·max|y|`` elementwise (the maximum taken over each sample); for ``Lip(g) = L``
    the error is then at most ``residual / (1 - L)``. ``atol`` defaults to 1e-6 (float32) or
    1e-12 (float64), ``rtol`` to 8 ulps of the dtype (the floating-point floor for large ``|y|``).
    Returns ``(x, iterations)``; warns naming the residual if ``max_iter`` is reached first.
    """
    if atol is None:
        atol = 1e-12 if y.dtype == torch.float64 else 1e-6
    if rtol is None:
        # The floating-point floor: |x + g(x) - y| cannot drop below a few ulps of |y|.
        rtol = 8 * torch.finfo(y.dtype).eps
    scale = y.abs().reshape(y.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (y.dim() - 1)))
    bound = atol + rtol * scale
    x = y
    residual = torch.zeros(())
    for it in range(1, max_iter + 1):
        x_new = y - g(x)
        residual = (x_new - x).abs()
        x = x_new
        if bool((residual <= bound).all()):
            return x, it
    warnings.warn(
        f"{where}: fixed-point inverse did not converge in {max_iter} iterations: "
        f"max residual |x + g(x) - y| = {float(residual.max()):.3e} (atol={atol:g}, rtol={rtol:g})",
        RuntimeWarning,
        stacklevel=2,
    )
    return x, max_iter
