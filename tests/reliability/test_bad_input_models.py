"""Bad input to models: wrong shapes, dtypes and pixel values give a ``ValueError`` naming expected
vs got (never a broadcast, a torch internals message, or a silent wrong answer)."""
import pytest
import torch

from invflow.models import build_model

GLOW = "glow-mnist-tiny"   # expects (B, 1, 28, 28)
TOY = "glow-toy-rings"     # expects (B, 2)
RESFLOW = "resflow-toy-rings"


@pytest.fixture(scope="module")
def glow():
    torch.manual_seed(0)
    return build_model(GLOW, model__hidden_channels=8, model__steps_per_level=1)


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return build_model(TOY, model__hidden_channels=8, model__steps_per_level=1)


@pytest.mark.parametrize("shape, message", [
    ((28, 28), r"expected a tensor of shape \(B, 1, 28, 28\), got rank 2"),
    ((2, 28, 28), r"expected a tensor of shape \(B, 1, 28, 28\), got rank 3"),
    ((2, 1, 28, 28, 1), "got rank 5"),
    ((2, 3, 28, 28), r"expected shape \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"),
    ((2, 1, 32, 32), r"got \(2, 1, 32, 32\)"),
    ((2, 1, 27, 27), r"got \(2, 1, 27, 27\)"),
    ((2, 1, 28, 14), r"got \(2, 1, 28, 14\)"),
])
def test_glow_log_prob_wrong_shape(glow, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=r"FlowModel.log_prob: .*" + message):
        glow.log_prob(torch.rand(shape))


@pytest.mark.parametrize("shape, message", [
    ((2,), r"expected a tensor of shape \(B, 2\), got rank 1"),
    ((4, 2, 1), "got rank 3"),
    ((4, 3), r"expected shape \(B, 2\), got \(4, 3\)"),
    ((4, 1), r"got \(4, 1\)"),
])
def test_toy_log_prob_wrong_shape(toy, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=r"FlowModel.log_prob: .*" + message):
        toy.log_prob(torch.randn(shape))


def test_resflow_log_prob_wrong_shape() -> None:
    model = build_model(RESFLOW, model__blocks_per_scale=1)
    with pytest.raises(ValueError, match=r"expected shape \(B, 2\), got \(4, 3\)"):
        model.log_prob(torch.randn(4, 3))


def test_integer_images_passed_to_log_prob(glow) -> None:
    x_int = torch.randint(0, 256, (2, 1, 28, 28))
    with pytest.raises(
        ValueError, match=r"expected torch.float32 input .*got torch.int64; use model.bits_per_dim"
    ):
        glow.log_prob(x_int)
    with pytest.raises(ValueError, match="got torch.uint8"):
        glow.log_prob(x_int.to(torch.uint8))


def test_float64_input_to_a_float32_model(toy) -> None:
    with pytest.raises(ValueError, match=r"got torch.float64; convert the input with x.to\(torch.float32\)"):
        toy.log_prob(torch.randn(4, 2, dtype=torch.float64))


def test_empty_batch(glow) -> None:
    with pytest.raises(ValueError, match=r"empty batch, shape \(0, 1, 28, 28\)"):
        glow.log_prob(torch.rand(0, 1, 28, 28))


@pytest.mark.parametrize(
    "x_int, n_bits, message",
    [
        (
            torch.full((2, 1, 28, 28), 256),
            8,
            r"must lie in \[0, 256\) for n_bits=8, got values in \[256, 256\]",
        ),
        (torch.full((2, 1, 28, 28), -1), 8, r"\[0, 256\) .*got values in \[-1, -1\]"),
        (torch.full((2, 1, 28, 28), 32), 5, r"must lie in \[0, 32\) for n_bits=5"),
        (
            torch.rand(2, 1, 28, 28),
            8,
            "expected integer images .*got dtype torch.float32; pass the raw integer pixels",
        ),
        (torch.full((2, 1, 28, 28), 3.0), 8, "got dtype torch.float32"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.long), 0, r"n_bits must be an integer in \[1, 8\], got 0"),
        (
            torch.zeros(2, 28, 28, dtype=torch.long),
            8,
            r"expected a tensor of shape \(B, 1, 28, 28\), got rank 3",
        ),
    ],
)
def test_bits_per_dim_bad_images(glow, x_int: torch.Tensor, n_bits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        glow.bits_per_dim(x_int, n_bits)


@pytest.mark.parametrize("overrides, message", [
    ({"model__levels": 3}, r"image size 7x7 at level 2 is not divisible by the squeeze factor 2; use a "
                           r"data.image_size divisible by 2\^3 or fewer model.levels"),
    ({"data__image_size": 30}, "image size 15x15 at level 1 is not divisible by the squeeze factor 2"),
    ({"data__image_size": 0}, "data.image_size must be > 0"),
])
def test_image_size_not_divisible_by_the_squeezes_fails_at_build(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(GLOW, model__hidden_channels=8, model__steps_per_level=1, **overrides)


@pytest.mark.parametrize(
    "n, temperature, message",
    [
        (0, 1.0, "n must be >= 1, got 0"),
        (2, -0.5, "temperature must be >= 0, got -0.5"),
        (2.5, 1.0, "n must be a positive integer, got 2.5"),
        (True, 1.0, "n must be a positive integer, got True"),
        ("4", 1.0, "n must be a positive integer, got '4'"),
        (2, float("nan"), "temperature must be a finite number, got nan"),
        (2, float("inf"), "temperature must be a finite number, got inf"),
        (10**12, 1.0, r"sample\(n=1000000000000\) needs .* GiB for the result alone"),
    ],
)
def test_sample_bad_arguments(toy, n: int, temperature: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy.sample(n, temperature=temperature)


@pytest.mark.parametrize("mixing", ["woodbury", "periodic"])
def test_image_only_mixing_on_toy_data_is_refused(mixing: str) -> None:
    with pytest.raises(ValueError, match="model.mixing"):
        build_model(TOY, model__mixing=mixing)
