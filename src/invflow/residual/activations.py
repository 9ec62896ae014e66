"""LipSwish, the 1-Lipschitz activation of Residual Flows (Chen et al. 2019, sec. 3.3)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# max_t d/dt [t·sigmoid(t)] = 1.0998… for every β (the derivative depends on βx only), so
# dividing by 1.1 makes the map 1-Lipschitz elementwise, hence in every p-norm.
SWISH_LIPSCHITZ_BOUND = 1.1


class LipSwish(nn.Module):
    """``x · sigmoid(βx) / 1.1`` with learned ``β = softplus(ρ) > 0`` (Chen et al. 2019, sec. 3.3).

    ``beta`` sets the initial β (default 1; Swish with β = 1 is SiLU).
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"LipSwish needs beta > 0, got {beta}")
        self.rho = nn.Parameter(torch.tensor(math.log(math.expm1(beta))))

    @property
    def beta(self) -> Tensor:
        return F.softplus(self.rho)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.beta * x) / SWISH_LIPSCHITZ_BOUND
