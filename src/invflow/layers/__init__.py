"""Flow layers under the names of their concept (docs/architecture.md section 8)."""
from invflow.core.flow import Flatten
from invflow.layers.actnorm import ActNorm
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.conv_conditioner import ConvConditioner, ZeroConv2d
from invflow.layers.coupling import AdditiveCoupling, AffineCoupling, MLPConditioner
from invflow.layers.emerging import EmergingConv
from invflow.layers.invconv import InvConv1x1
from invflow.layers.logit import LogitTransform
from invflow.layers.macow import MaCowUnit, MaskedConvCoupling
from invflow.layers.normalize import Standardize
from invflow.layers.periodic import PeriodicConv
from invflow.layers.spline import SplineCoupling, rational_quadratic_spline
from invflow.layers.split import FactorOut
from invflow.layers.squeeze import Squeeze
from invflow.layers.woodbury import (
                                     ChannelWoodbury,
                                     HeightWoodbury,
                                     MEWoodbury,
                                     SpatialWoodbury,
                                     WidthWoodbury,
                                     WoodburyMixing,
)

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "ChannelWoodbury", "ConditionalGaussianPrior",
    "ConvConditioner", "EmergingConv", "FactorOut", "Flatten", "MLPConditioner", "ZeroConv2d",
    "HeightWoodbury", "InvConv1x1", "LogitTransform", "MEWoodbury", "MaCowUnit", "MaskedConvCoupling",
    "PeriodicConv", "SpatialWoodbury", "SplineCoupling", "Squeeze", "Standardize", "WidthWoodbury",
    "WoodburyMixing",
    "rational_quadratic_spline",
]
