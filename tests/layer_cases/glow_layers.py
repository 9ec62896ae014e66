"""The Glow building blocks: ActNorm, Squeeze, LogitTransform, Standardize, 1x1 convolutions,
factor-out."""
from harness import LayerCase, unit_interval_sampler
from invflow.core.flow import Flatten, SequentialFlow
from invflow.layers.actnorm import ActNorm
from invflow.layers.invconv import InvConv1x1
from invflow.layers.logit import LogitTransform
from invflow.layers.normalize import Standardize
from invflow.layers.split import FactorOut
from invflow.layers.squeeze import Squeeze


def factor_out() -> FactorOut:
    return FactorOut((4, 2, 3), SequentialFlow(ActNorm(2), Flatten((2, 2, 3))))


CASES = [
    LayerCase("actnorm-image", lambda: ActNorm(3), (3, 4, 5), at_shape=lambda s: (ActNorm(s[0]), s)),
    LayerCase("actnorm-vector", lambda: ActNorm(2, vector=True), (2,)),
    LayerCase("squeeze", lambda: Squeeze(3), (3, 4, 6), divisible_by=2,
              at_shape=lambda s: (Squeeze(s[0]), (s[0], 2 * s[1], 2 * s[2]))),
    LayerCase(
        "logit", lambda: LogitTransform((2, 3, 3), alpha=0.05), (2, 3, 3), sampler=unit_interval_sampler,
        at_shape=lambda s: (LogitTransform(s, alpha=0.05), s),
    ),
    LayerCase(
        "logit-small-alpha",
        lambda: LogitTransform((1, 4, 4), alpha=1e-5),
        (1, 4, 4),
        sampler=unit_interval_sampler,
    ),
    LayerCase("standardize", lambda: Standardize((3, 4, 5), [0.5, 0.4, 0.45], [0.25, 0.2, 0.3]), (3, 4, 5),
              at_shape=lambda s: (Standardize(s, [0.5] * s[0], [0.3] * s[0]), s)),
    LayerCase("invconv-plain", lambda: InvConv1x1(4, lu=False), (4, 3, 5)),
    LayerCase("invconv-lu", lambda: InvConv1x1(4, lu=True), (4, 6, 10),
              at_shape=lambda s: (InvConv1x1(s[0], lu=True), s)),
    LayerCase("invconv-lu-vector", lambda: InvConv1x1(3, lu=True, vector=True), (3,)),
    LayerCase("factor-out", factor_out, (4, 2, 3), check_wrong_channels=True),
]
