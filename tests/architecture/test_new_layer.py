"""Mixing layers and couplings are chosen by name from registries, each with its own nested config
section. Adding one is its file (``toy_mixing.py``) plus one registry line plus its harness case;
configs, training, checkpoints and the brute-force checks follow."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import invflow
from harness import all_cases
from invflow import testing
from invflow.layers.choices import CouplingChoice, MixingChoice
from invflow.layers.registry import COUPLINGS, MIXINGS
from invflow.models import config_from_dict, load_config
from invflow.train.loop import train

from .toy_mixing import CASE, ReverseScale, ReverseScaleChoice

RAW = {
    "data": {"dataset": "8gaussians", "batch_size": 32, "toy_samples": 256},
    "model": {"family": "glow", "levels": 1, "steps_per_level": 2, "hidden_channels": 8,
              "mixing": {"name": "reverse-scale", "init_log_scale": 0.1}},
    "train": {"steps": 3, "warmup_steps": 1, "eval_batches": 1, "eval_every": 100, "sample_every": 100,
              "checkpoint_every": 100, "log_every": 1, "n_samples_grid": 4, "tensorboard": False},
}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(MIXINGS, ReverseScaleChoice.name, ReverseScaleChoice)  # the one registry line


def test_a_new_mixing_layer_is_named_by_a_config_trains_and_reloads(registered, tmp_path) -> None:
    config = config_from_dict(RAW)
    assert config.model.mixing == ReverseScaleChoice(init_log_scale=0.1)
    model = invflow.build_model(config)
    assert sum(isinstance(m, ReverseScale) for m in model.modules()) == 2
    result = train(config, tmp_path / "run", progress=False)
    assert result.step == 3 and math.isfinite(result.test_value)
    model, loaded = invflow.load_checkpoint(tmp_path / "run")
    assert loaded.to_dict() == config.to_dict()
    assert loaded.to_dict()["model"]["mixing"] == {"name": "reverse-scale", "init_log_scale": 0.1}


def test_the_new_layer_passes_the_brute_force_checks() -> None:
    layer = CASE.build(seed=0)
    report = testing.check_flow(layer, CASE.inputs(seed=0))
    assert {"logdet", "inverse", "gradients"} <= set(report)


def test_an_unregistered_name_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="model.mixing must be one of '1x1', 'lu', .*got 'reverse-scale'"):
        config_from_dict(RAW)


@pytest.mark.parametrize("registry, choice", [(MIXINGS, MixingChoice), (COUPLINGS, CouplingChoice)])
def test_every_registered_layer_builds_a_layer_with_a_harness_case(registry, choice) -> None:
    """Each registry entry, with its default options, builds layers the harness checks."""
    checked = {type(case.make()) for case in all_cases()}
    for name, options in registry.items():
        assert issubclass(options, choice) and options.name == name
        shape = (4, 4, 4)
        layer = (options().build(shape, 0) if choice is MixingChoice
                 else options().build(shape, hidden=4, swap=False, context=0))
        assert type(layer) in checked, f"{name}: no harness case builds a {type(layer).__name__}"


def test_a_name_alone_is_the_default_options() -> None:
    by_name = load_config("glow-mnist-tiny", {"model.coupling": "spline"}).model.coupling
    nested = load_config("glow-mnist-tiny", {"model.coupling": {"name": "spline"}}).model.coupling
    assert by_name == nested == COUPLINGS["spline"]() and (by_name.bins, by_name.tail_bound) == (4, 3.0)


@pytest.mark.parametrize("overrides, message", [
    ({"model.mixing": "dense"},
     "model.mixing must be one of '1x1', 'lu', 'emerging', 'periodic', 'woodbury', 'me-woodbury', "
     "got 'dense'"),
    ({"model.mixing": {"kernel_size": 3}}, "model.mixing needs a name, one of '1x1'"),
    ({"model.mixing": 3}, "model.mixing must be a layer name or a mapping with a name, got 3"),
    ({"model.mixing": "emerging", "model.mixing.kernal_size": 3},
     "unknown config key model.mixing.kernal_size; known keys: kernel_size"),
    ({"model.mixing": "emerging", "model.mixing.kernel_size": 4},
     "model.mixing.kernel_size must be a positive odd integer, got 4"),
    ({"model.mixing": "periodic", "model.mixing.kernel_size": 0},
     "model.mixing.kernel_size must be a positive odd integer, got 0"),
    ({"model.coupling": "spline", "model.coupling.bins": 2.5},
     "model.coupling.bins must be an integer, got 2.5"),
    ({"model.mixing": "woodbury", "model.mixing.latent_channel": [4]},
     r"model.mixing.latent_channel needs 2 positive entries \(one per level\), got \[4\]"),
    ({"model.mixing.kernel_size": 3},  # glow-mnist-tiny's mixing is lu
     "unknown config key model.mixing.kernel_size; model.mixing takes no options"),
    ({"model.levels.deep": 1}, "model.levels is not a nested section here"),
    ({"model.mixing.a.b": 1}, "must be section.key"),
])
def test_bad_choices_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("glow-mnist-tiny", overrides)


def test_an_option_override_survives_a_name_override_given_before_or_after_it() -> None:
    for overrides in ({"model.mixing": "periodic", "model.mixing.kernel_size": 5},
                      {"model.mixing.kernel_size": 5, "model.mixing": "periodic"}):
        assert load_config("glow-mnist-tiny", overrides).model.mixing == MIXINGS["periodic"](kernel_size=5)


def test_an_option_override_keeps_the_presets_other_options() -> None:
    mixing = load_config("woodbury-glow-cifar10", {"model.mixing.latent_spatial": [4, 4, 4]}).model.mixing
    assert (mixing.name, mixing.latent_channel, mixing.latent_spatial) == ("woodbury", [8, 8, 16], [4, 4, 4])


def test_a_child_preset_naming_another_layer_drops_the_bases_options(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("base: woodbury-glow-cifar10\nmodel:\n"
                    "  mixing: {name: me-woodbury, latent_width: [2, 2, 2]}\n")
    mixing = load_config(path).model.mixing
    assert mixing == MIXINGS["me-woodbury"](latent_width=[2, 2, 2])


def test_the_flat_options_of_0_3_are_read_into_the_chosen_layer_with_a_warning() -> None:
    flat = load_config("woodbury-glow-cifar10").to_dict()
    mixing = flat["model"].pop("mixing")
    flat["model"].update(mixing="woodbury", woodbury_latent_channel=mixing["latent_channel"],
                         woodbury_latent_spatial=mixing["latent_spatial"], woodbury_latent_height=None,
                         woodbury_latent_width=None, emerging_kernel_size=3, periodic_kernel_size=3,
                         coupling="affine", spline_bins=4, spline_tail_bound=3.0)
    moved = "model.woodbury_latent_channel -> model.mixing.latent_channel"
    with pytest.warns(DeprecationWarning, match=moved):
        migrated = config_from_dict(flat)
    assert migrated.to_dict() == load_config("woodbury-glow-cifar10").to_dict()


def test_a_flat_option_beside_its_nested_form_is_refused() -> None:
    raw = load_config("spline-cifar10").to_dict()
    raw["model"]["spline_bins"] = 8
    with warnings.catch_warnings(), pytest.raises(ValueError, match="spline_bins and model.coupling.bins"):
        warnings.simplefilter("ignore")
        config_from_dict(raw)


def test_a_0_3_checkpoint_config_builds_the_same_model() -> None:
    """Flat keys and nested sections give bit-identical initial weights for every mixing and coupling."""
    for name in ("me-woodbury-glow-cifar10-tiny", "periodic-glow-cifar10-tiny", "spline-cifar10-tiny"):
        new = load_config(name)
        raw = new.to_dict()
        mixing, coupling = raw["model"].pop("mixing"), raw["model"].pop("coupling")
        name_of = mixing.pop("name")
        prefix = "woodbury_" if "woodbury" in name_of else f"{name_of}_"
        raw["model"].update({f"{prefix}{k}": v for k, v in mixing.items()}, mixing=name_of)
        raw["model"].update({f"spline_{k}": v for k, v in coupling.items() if k != "name"},
                            coupling=coupling["name"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old = config_from_dict(raw)
        models = []
        for config in (old, new):
            torch.manual_seed(0)
            models.append(invflow.build_model(config))
        old_weights, new_weights = (m.state_dict().items() for m in models)
        for (k, a), (_, b) in zip(old_weights, new_weights, strict=True):
            assert torch.equal(a, b), (name, k)
