"""ActNorm's data-dependent initialisation: statistics, zero-variance channels, save/load."""
import io

import torch

from invflow.layers.actnorm import ActNorm


def test_init_whitens_first_batch() -> None:
    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(64, 3, 5, 5)
    y, _ = ActNorm(3)(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_zero_variance_channel_gives_finite_output_and_unit_scale() -> None:
    x = torch.randn(16, 3, 4, 4)
    x[:, 1] = 0.25  # a constant channel, as an all-black border is after squeezing
    layer = ActNorm(3)
    y, logdet = layer(x)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert layer.log_scale[1].item() == 0.0
    torch.testing.assert_close(y[:, 1], torch.zeros_like(y[:, 1]))


def test_single_sample_vector_init_is_finite() -> None:
    layer = ActNorm(2, vector=True)
    y, logdet = layer(torch.tensor([[1.0, 2.0]]))
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()


def test_init_survives_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    layer = ActNorm(3)
    layer(5 + torch.randn(8, 3, 4, 4))
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    restored = ActNorm(3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert bool(restored.initialized)
    x = torch.randn(4, 3, 4, 4)  # a very different batch must not re-initialise
    torch.testing.assert_close(restored(x)[0], layer(x)[0])
