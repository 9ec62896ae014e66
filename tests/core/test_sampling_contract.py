"""Sampling never returns or writes non-finite values silently, stays finite where Glow's
unbounded inverse scale overflowed, and ``sample`` returns images that ``log_prob`` accepts
(issue 12 items 1 and 2)."""
import pytest
import torch

from invflow import run_files
from invflow.cli import main
from invflow.core.nonfinite import NonFiniteSamples
from invflow.layers.actnorm import ActNorm
from invflow.layers.coupling import AffineCoupling, bounded_log_scale
from invflow.models import build_model

# One tiny preset of every family, at a small image size; the hybrid and toy models included.
FAMILIES = ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny", "me-woodbury-glow-cifar10-tiny",
            "emerging-glow-cifar10-tiny", "periodic-glow-cifar10-tiny", "spline-cifar10-tiny",
            "macow-cifar10-tiny", "resflow-mnist-tiny", "resflow-hybrid-mnist-tiny", "glow-toy-rings",
            "resflow-toy-rings"]


def tiny(name: str, **overrides):
    torch.manual_seed(0)
    if "toy" in name:
        model = build_model(name, model__hidden_channels=8, **overrides)
        model.log_prob(torch.randn(16, 2))  # data-dependent init in training mode
    else:
        size = 16 if name.startswith("periodic") else 8  # a 3x3 periodic kernel needs 4x4 at the last level
        model = build_model(name, model__hidden_channels=8, data__image_size=size, **overrides)
        model.log_prob(torch.rand(8, *model.input_shape))
    return model.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_of_sample_works_for_every_family(name: str) -> None:
    model = tiny(name)
    for temperature in (1.0, 3.0):  # at T = 3 a logit model's inverse reaches past [0, 1]
        torch.manual_seed(1)
        x = model.sample(6, temperature=temperature)
        if len(model.input_shape) == 3:
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0, (float(x.min()), float(x.max()))
        with torch.no_grad():
            assert torch.isfinite(model.log_prob(x)).all()


def test_raw_sample_is_the_unclamped_inverse() -> None:
    model = tiny("glow-mnist-tiny")
    torch.manual_seed(1)
    raw = model.sample(6, temperature=3.0, raw=True)
    torch.manual_seed(1)
    clamped = model.sample(6, temperature=3.0)
    assert raw.min() < 0 or raw.max() > 1  # a fresh Glow at T = 3 reaches outside [0, 1]
    torch.testing.assert_close(clamped, raw.clamp(0, 1))
    with torch.no_grad():  # the raw sample is the exact inverse of the latent
        torch.manual_seed(1)
        z = model.prior.sample(6, 3.0)
        torch.testing.assert_close(model.flow(raw)[0], z, atol=1e-4, rtol=1e-4)


def test_sampling_in_chunks_gives_the_same_samples() -> None:
    model = tiny("glow-mnist-tiny")
    torch.manual_seed(2)
    whole = model.sample(10)
    torch.manual_seed(2)
    torch.testing.assert_close(model.sample(10, chunk_size=3), whole)


def test_bounded_log_scale_matches_glow_near_zero_and_bounds_the_inverse() -> None:
    h = torch.linspace(-1.0, 6.0, 50, dtype=torch.float64)
    torch.testing.assert_close(bounded_log_scale(h), torch.nn.functional.logsigmoid(h + 2), atol=0.02, rtol=0)
    extreme = bounded_log_scale(torch.tensor([-1e30, -1e4, 1e4]))
    assert extreme.min() >= -5.0 and extreme.max() <= 0.0  # tanh rounds to 1 in float32 at the extremes


def test_conditioners_that_see_out_of_distribution_input_do_not_overflow_the_inverse() -> None:
    model = tiny("glow-mnist-tiny")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # large conditioner outputs, as a trained net gives far from the data
        for layer in model.modules():
            if isinstance(layer, AffineCoupling):
                last = layer.net[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=generator) * 2.0)
                last.bias.copy_(torch.randn(last.bias.shape, generator=generator) * 5.0 - 10.0)
    torch.manual_seed(4)
    x = model.sample(64, temperature=1.0, raw=True)
    assert torch.isfinite(x).all()


def test_non_finite_samples_are_refused_with_count_and_first_layer() -> None:
    model = tiny("glow-mnist-tiny")
    actnorms = [(name, m) for name, m in model.named_modules() if isinstance(m, ActNorm)]
    name, layer = actnorms[0]  # the last ActNorm the inverse runs through
    with torch.no_grad():
        layer.log_scale[0] = -200.0  # exp(200) overflows float32 in its inverse
    message = (rf"(\d+) of 16 samples at temperature 1 are non-finite .* "
               rf"first produced them in layer level 1, step 1: ActNorm \({name}\)")
    with pytest.raises(NonFiniteSamples, match=message) as info:
        model.sample(16)
    assert info.value.count >= 1 and info.value.samples.shape == (16, 1, 8, 8)


def test_cli_sample_refuses_to_write_non_finite_samples(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "glow-mnist-tiny",
                "--out",
                str(run),
                "--set",
                "train.steps=1",
                "--set",
                "data.dataset=rings",
                "--set",
                "model.hidden_channels=4",
                "--set",
                "model.steps_per_level=1",
                "--set",
                "train.eval_batches=1",
                "--set",
                "data.batch_size=8",
                "--set",
                "data.toy_samples=64",
                "--set",
                "train.n_samples_grid=4",
            ]
        )
        == 0
    )
    from invflow.train.checkpoint import load_checkpoint_file, save_checkpoint
    path = run / run_files.LAST_PATH
    state = load_checkpoint_file(path)
    key = next(k for k in state["ema"] if k.endswith("log_scale"))
    state["ema"][key][0] = -200.0
    save_checkpoint(state, path)
    out = tmp_path / "grid.png"
    assert main(["sample", str(run), "-n", "8", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "samples at temperature 1 are non-finite" in err and "ActNorm" in err
    )
    assert not out.exists()


def test_decoding_non_finite_latents_is_refused_with_the_layer() -> None:
    from invflow.latent.codec import decode

    model = tiny("glow-mnist-tiny")
    name, layer = next((n, m) for n, m in model.named_modules() if isinstance(m, ActNorm))
    with torch.no_grad():
        layer.log_scale[0] = -200.0
        z = model.flow(torch.rand(4, *model.input_shape))[0]
    message = rf"of 4 decoded latents are non-finite .* layer level 1, step 1: ActNorm \({name}\)"
    with pytest.raises(NonFiniteSamples, match=message):
        decode(model, z)
