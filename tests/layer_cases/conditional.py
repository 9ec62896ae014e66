"""Conditional layers: every kind of coupling, the factor-out and top priors, and residual blocks,
each checked for several contexts (one-hot labels and Gaussian vectors, tests/harness.py)."""

from harness import LayerCase
from invflow.core.flow import Flatten, SequentialFlow
from invflow.layers.actnorm import ActNorm
from invflow.layers.conditional_prior import ConditionalGaussianPrior
from invflow.layers.coupling import AdditiveCoupling, AffineCoupling
from invflow.layers.macow import MaCowUnit
from invflow.layers.spline import SplineCoupling
from invflow.layers.split import FactorOut
from invflow.residual import InvertibleResidualBlock, conv_residual_net, mlp_residual_net
from layer_cases.coupling import gelu_conv, tanh_mlp

K = 3  # context width


def _factor_out(per_position: bool = False) -> FactorOut:
    inner = SequentialFlow(AffineCoupling((2, 2, 3), hidden=6, context_features=K), Flatten((2, 2, 3)))
    return FactorOut((4, 2, 3), inner, context_features=K, context_per_position=per_position)


def _conv_block(**kwargs: object) -> InvertibleResidualBlock:
    return InvertibleResidualBlock(
        conv_residual_net(2, 8, context_features=K, **kwargs), (2, 4, 4), logdet="exact"
    )


def _mlp_block(forward_mode: bool = True) -> InvertibleResidualBlock:
    block = InvertibleResidualBlock(mlp_residual_net(2, 16, context_features=K), (2,), logdet="exact")
    block.carries_jacobian = forward_mode  # False: the reverse-mode Jacobian rows
    return block


def case(name: str, make, shape: tuple[int, ...], **kwargs) -> LayerCase:
    return LayerCase(name, make, shape, context_features=K, **kwargs)


CASES = [
    case(
        "cond-affine-coupling-image",
        lambda: AffineCoupling((4, 4, 6), hidden=8, context_features=K),
        (4, 4, 6),
    ),
    case("cond-affine-coupling-vector", lambda: AffineCoupling((2,), hidden=16, context_features=K), (2,)),
    case(
        "cond-additive-coupling-image",
        lambda: AdditiveCoupling((3, 4, 4), hidden=8, swap=True, context_features=K),
        (3, 4, 4),
    ),
    case(
        "cond-spline-coupling-image",
        lambda: SplineCoupling((4, 4, 4), hidden=8, bins=3, context_features=K),
        (4, 4, 4),
    ),
    case(
        "cond-spline-coupling-vector",
        lambda: SplineCoupling((3,), hidden=12, bins=4, context_features=K),
        (3,),
    ),
    case("cond-macow-unit", lambda: MaCowUnit(2, hidden=6, context_features=K), (2, 5, 4)),
    case("cond-factor-out", _factor_out, (4, 2, 3)),
    case("cond-factor-out-per-position", lambda: _factor_out(per_position=True), (4, 2, 3)),
    case("cond-gaussian-prior-image", lambda: ConditionalGaussianPrior((3, 2, 2), K), (3, 2, 2),
         at_shape=lambda s: (ConditionalGaussianPrior(s, K), s)),
    case("cond-gaussian-prior-per-position",
         lambda: ConditionalGaussianPrior((3, 2, 2), K, per_position=True), (3, 2, 2)),
    case("cond-gaussian-prior-vector", lambda: ConditionalGaussianPrior((2,), K), (2,)),
    case("cond-iresblock-conv-exact", _conv_block, (2, 4, 4)),
    case("cond-iresblock-conv-inf-norm-exact", lambda: _conv_block(norm_orders="f"), (2, 4, 4)),
    case("cond-iresblock-mlp-exact-forward-mode", _mlp_block, (2,)),
    case("cond-iresblock-mlp-exact-reverse-mode", lambda: _mlp_block(False), (2,)),
    # a user's conditioner factory reads [x_a, c] as n_a + K input channels
    case(
        "cond-affine-coupling-custom-conv",
        lambda: AffineCoupling((3, 4, 4), swap=True, conditioner=gelu_conv, context_features=K),
        (3, 4, 4),
    ),
    case(
        "cond-spline-coupling-custom-mlp",
        lambda: SplineCoupling((4,), bins=3, conditioner=tanh_mlp, context_features=K),
        (4,),
    ),
    case(
        "cond-sequence-with-unconditional-layers",
        lambda: SequentialFlow(ActNorm(2, vector=True), AffineCoupling((2,), hidden=8, context_features=K)),
        (2,),
    ),
]
