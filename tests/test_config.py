"""Typed configs: presets, inheritance, overrides, and clear errors for bad keys and values."""
import pytest
import torch

import invflow
from invflow.config import parse_override
from invflow.data.registry import IMAGE_DATASETS
from invflow.models import load_config


def test_presets_list_names_and_descriptions() -> None:
    table = invflow.presets()
    for name in ["glow-mnist", "glow-mnist-tiny", *(f"glow-toy-{t}" for t in
                 ("checkerboard", "8gaussians", "2moons", "rings", "pinwheel", "swissroll"))]:
        assert name in table and table[name]


def small_overrides(name: str) -> dict:
    """Shrink a preset so that building it is fast; image presets get a small image size."""
    config = load_config(name)
    overrides: dict = {}
    if config.family == "glow":
        overrides = {"model.steps_per_level": 1, "model.hidden_channels": 8}
    if config.family in ("resflow", "hybrid"):
        overrides = {"model.blocks_per_scale": 1, "model.hidden_channels": 8}
    if config.data.dataset in IMAGE_DATASETS:
        # The last level is 2x2, or 4x4 for periodic mixing, whose 3x3 kernel must fit the image.
        mixing = getattr(config.model, "mixing", None)
        last = 4 if getattr(mixing, "name", None) == "periodic" else 2
        overrides["data.image_size"] = last * 2 ** getattr(config.model, "levels", 3)
        for key in ("channel", "spatial", "height", "width"):
            if getattr(mixing, f"latent_{key}", None) is not None:
                overrides[f"model.mixing.latent_{key}"] = [2] * config.model.levels
    return overrides


@pytest.mark.parametrize("name", sorted(invflow.presets()))
def test_every_preset_builds_and_inverts(name: str) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(load_config(name, small_overrides(name))).double()
    x = 0.1 + 0.8 * torch.rand(2, *model.input_shape, dtype=torch.float64)
    spec = model.context_spec  # conditional presets: one context per sample, as the layers read it
    given = None if spec is None else (
        torch.tensor([0, 1]) if spec.is_class else torch.randn(2, spec.context_dim))
    context = model.encode_context(given, 2, name)
    z, logdet = model.flow(x, context)
    assert z.shape == (2, model.dims) and torch.isfinite(logdet).all()
    torch.testing.assert_close(model.flow.inverse(z, context)[0], x, atol=1e-6, rtol=0)


def test_tiny_inherits_from_its_base() -> None:
    tiny, full = load_config("glow-mnist-tiny"), load_config("glow-mnist")
    assert tiny.model.levels == full.model.levels
    assert tiny.model.hidden_channels < full.model.hidden_channels
    assert tiny.description != full.description


def test_overrides_are_typed() -> None:
    config = load_config("glow-mnist-tiny", {"train.lr": 1, "model.levels": 1, "data.image_size": 16})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.model.levels == 1 and config.data.image_size == 16


@pytest.mark.parametrize("overrides, message", [
    ({"model.levls": 2}, "unknown config key model.levls"),
    ({"train.lr": "fast"}, "train.lr must be a number"),
    ({"model.levels": 1.5}, "model.levels must be an integer"),
    ({"data.batch_size": -4}, "data.batch_size must be > 0"),
    ({"model.mixing": "3x3"}, "model.mixing must be one of"),
    ({"train.ema_decay": 1.0}, r"train.ema_decay must be in \[0, 1\)"),
    ({"levels": 2}, "must be section.key"),
    ({"model.family": "nope"}, "model.family must be one of"),
])
def test_bad_overrides_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("glow-mnist-tiny", overrides)


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(ValueError, match="unknown preset 'glow-mnsit'"):
        load_config("glow-mnsit")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config("does/not/exist.yaml")


def test_yaml_file_with_base(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("base: glow-mnist-tiny\nmodel:\n  hidden_channels: 8\n")
    config = load_config(path)
    assert config.name == "mine" and config.model.hidden_channels == 8 and config.model.levels == 2


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("train.lr=1e-3") == ("train.lr", 1e-3)
    assert parse_override("model.mixing.latent_channel=[8, 8]") == ("model.mixing.latent_channel", [8, 8])
    assert parse_override("train.grad_clip=null") == ("train.grad_clip", None)
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("train.lr")
