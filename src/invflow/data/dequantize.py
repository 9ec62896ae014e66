"""Uniform dequantization of integer images (docs/architecture.md section 3)."""
from __future__ import annotations

import torch
from torch import Tensor

from invflow.config import check_n_bits


def check_integer_images(x_int: Tensor, n_bits: int) -> None:
    """Raise ``ValueError`` unless ``x_int`` holds integers in ``[0, 2^n_bits)``.

    ``uint8`` images at ``n_bits >= 8`` are in range by their type, and are not read: on a GPU
    reading the values would make every training step wait for the device. Other integer
    types and fewer bits are read once (one wait on a GPU)."""
    check_n_bits(n_bits)
    if x_int.dtype.is_floating_point or x_int.dtype.is_complex or x_int.dtype == torch.bool:
        raise ValueError(
            f"expected integer images (uint8/int) in [0, {2**n_bits}), got dtype {x_int.dtype}; "
            "pass the raw integer pixels, not floats"
        )
    if x_int.dtype == torch.uint8 and n_bits >= 8:
        return
    if x_int.numel() and bool(((x_int < 0) | (x_int >= 2**n_bits)).any()):
        raise ValueError(
            f"integer images must lie in [0, {2**n_bits}) for n_bits={n_bits}, "
            f"got values in [{int(x_int.min())}, {int(x_int.max())}]"
        )


def dequantize(x_int: Tensor, n_bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform dequantization ``x = (x_int + u) / 2^n_bits``, ``u ~ U[0,1)``
    (docs/architecture.md section 3)."""
    check_integer_images(x_int, n_bits)
    x = x_int.to(dtype)
    return (x + torch.rand_like(x)) / 2**n_bits
