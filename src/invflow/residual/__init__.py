"""Residual flows (Chen et al. 2019): Lipschitz layers, log-det estimators, invertible blocks."""
from invflow.residual.activations import LipSwish
from invflow.residual.fixed_point import fixed_point_inverse
from invflow.residual.implicit_inverse import implicit_fixed_point_inverse
from invflow.residual.iresblock import (
    ESTIMATOR,
    EstimatorDefaults,
    InvertibleResidualBlock,
)
from invflow.residual.lipschitz import (
    LearnedNormOrder,
    SpectralNormConv2d,
    SpectralNormLinear,
)
from invflow.residual.nets import conv_residual_net, mlp_residual_net, parse_norm_orders

__all__ = [
    "ESTIMATOR",
    "EstimatorDefaults",
    "InvertibleResidualBlock",
    "LearnedNormOrder",
    "LipSwish",
    "SpectralNormConv2d",
    "SpectralNormLinear",
    "conv_residual_net",
    "fixed_point_inverse",
    "implicit_fixed_point_inverse",
    "mlp_residual_net",
    "parse_norm_orders",
]
