"""The fixed-point inverse of an invertible residual block ``y = x + g(x)``, ``Lip(g) < 1``
(Behrmann et al. 2019, alg. 1)."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


@contextmanager
def without_tf32(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN convolutions and matmuls in full float32 inside (TF32 off, the previous
    settings restored after). TF32 keeps 10 mantissa bits, a relative error near 1e-3 in every
    ``g(x)``: the fixed-point iteration then stalls far above its float32 stopping bound and runs
    to ``max_iter``. Nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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
    Returns ``(x, iterations)``; warns naming the residual if ``max_iter`` is reached first. On
    CUDA the iteration runs without TF32 (:func:`without_tf32`).
    Under ``torch.export`` the same iteration and stopping rule run as one ``while_loop``, so the
    exported program stops where this function does (``iterations`` is then a tensor, and the
    warning cannot be raised).
    """
    if atol is None:
        atol = 1e-12 if y.dtype == torch.float64 else 1e-6
    if rtol is None:
        # The floating-point floor: |x + g(x) - y| cannot drop below a few ulps of |y|.
        rtol = 8 * torch.finfo(y.dtype).eps
    scale = y.abs().reshape(y.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (y.dim() - 1)))
    bound = atol + rtol * scale
    if torch.compiler.is_exporting():
        return _exported_loop(g, y, bound, max_iter)
    x = y
    residual = torch.zeros(())
    with without_tf32(y.device):
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


def _exported_loop(g: Callable[[Tensor], Tensor], y: Tensor, bound: Tensor,
                   max_iter: int) -> tuple[Tensor, Tensor]:
    """The iteration above as a ``torch.export``-able ``while_loop`` (data-dependent stop)."""
    from torch._higher_order_ops import while_loop

    def running(x: Tensor, iterations: Tensor, converged: Tensor) -> Tensor:
        return torch.logical_and(torch.logical_not(converged), iterations < max_iter)

    def step(x: Tensor, iterations: Tensor, converged: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x_new = y - g(x)
        return x_new, iterations + 1, ((x_new - x).abs() <= bound).all()

    x, iterations, _ = while_loop(running, step, (y.clone(), torch.tensor(0), torch.tensor(False)))
    return x, iterations
