"""Invertible residual blocks (exact log-det) on images and vectors, with several norm orders."""
from harness import LayerCase
from invflow.residual import InvertibleResidualBlock, conv_residual_net, mlp_residual_net


def _conv_block(**net_kwargs: object) -> InvertibleResidualBlock:
    return InvertibleResidualBlock(conv_residual_net(2, 8, **net_kwargs), (2, 4, 4), logdet="exact")


def _mlp_block(**net_kwargs: object) -> InvertibleResidualBlock:
    return InvertibleResidualBlock(mlp_residual_net(2, 16, **net_kwargs), (2,), logdet="exact")


CASES = [
    # over drawn shapes the unbiased estimator: the exact log-det needs the full Jacobian (seconds at
    # 5x5x5), and its value is the harness's job
    LayerCase("iresblock-conv-exact", _conv_block, (2, 4, 4),
              at_shape=lambda s: (InvertibleResidualBlock(conv_residual_net(s[0], 6), s, "unbiased"), s)),
    LayerCase("iresblock-conv-inf-norm-exact", lambda: _conv_block(norm_orders="f"), (2, 4, 4)),
    LayerCase("iresblock-conv-learned-orders-exact", lambda: _conv_block(learn_norm_orders=True), (2, 4, 4)),
    LayerCase("iresblock-mlp-exact", _mlp_block, (2,)),
    LayerCase("iresblock-mlp-mixed-orders-exact", lambda: _mlp_block(norm_orders=[2, 1, 1.5, 2.5, 2]), (2,)),
]
