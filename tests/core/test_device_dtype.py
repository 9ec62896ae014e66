"""Log-det accumulators follow the input's dtype and device."""
import pytest
import torch

import invflow

SMALL = {"model.steps_per_level": 1, "model.hidden_channels": 8, "data.image_size": 8}


def test_float64_model_gives_float64_logdet() -> None:
    model = invflow.build_model(
        "glow-mnist-tiny", **{k.replace(".", "__"): v for k, v in SMALL.items()}
    ).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    z, logdet = model.flow(x)
    assert z.dtype == logdet.dtype == torch.float64 and logdet.shape == (3,)
    assert model.log_prob(x).dtype == torch.float64
    assert model.bits_per_dim(torch.randint(0, 256, (3, 1, 8, 8)), 8).dtype == torch.float64


@pytest.mark.device
def test_a_model_built_under_a_default_device_keeps_everything_there(device: torch.device) -> None:
    with torch.device(device):
        model = invflow.build_model("glow-mnist-tiny", **{k.replace(".", "__"): v for k, v in SMALL.items()})
        x = torch.rand(3, 1, 8, 8)
    z, logdet = model.flow(x)
    assert z.device.type == logdet.device.type == device.type
    assert model.sample(2).device.type == device.type
