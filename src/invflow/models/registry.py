"""The model-family registry: ``model.family`` name -> model-section dataclass + builder.

This is the one place that knows which families exist. ``invflow.config`` loads YAML and
types the generic sections; the ``model`` section is typed with the dataclass registered here.
Adding a family is one module (a config dataclass with ``validate()`` and a
``build(model_config, data_config) -> FlowModel``) plus one line in ``FAMILIES``
(docs/architecture.md, "Adding a model family").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invflow.config import Config, DataConfig, build_config, read_config
from invflow.core.model import FlowModel
from invflow.models import glow, hybrid, resflow


@dataclass(frozen=True)
class Family:
    """A model family: the dataclass of its ``model`` config section and its builder."""

    config: type
    build: Callable[[Any, DataConfig], FlowModel]


FAMILIES: dict[str, Family] = {
    "glow": Family(glow.GlowConfig, glow.build),
    "resflow": Family(resflow.ResFlowConfig, resflow.build),
    "hybrid": Family(hybrid.HybridConfig, hybrid.build),
}


def model_sections() -> dict[str, type]:
    """Family name -> the dataclass of its ``model`` section."""
    return {name: family.config for name, family in FAMILIES.items()}


def config_from_dict(raw: dict[str, Any], name: str = "custom") -> Config:
    """A validated ``Config`` from a plain mapping (as stored in checkpoints and ``config.yaml``)."""
    return build_config(raw, model_sections(), name)


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a preset by name (``invflow configs``) or a YAML file, then apply ``section.key``
    overrides.

    >>> config = load_config("glow-mnist-tiny", {"train.lr": 3e-4, "model.levels": 1})
    >>> config.family, config.model.levels, config.train.lr, config.data.dataset
    ('glow', 1, 0.0003, 'mnist')
    >>> load_config("glow-mnist-tiny", {"train.lrr": 1})
    Traceback (most recent call last):
    ...
    ValueError: unknown config key train.lrr; known keys: ...
    """
    raw = read_config(name_or_path, overrides)
    return build_config(raw, model_sections(), raw["name"])


def build_model(name_or_config: str | Config, **overrides: Any) -> FlowModel:
    """Build the model of a preset name, YAML path or ``Config``; overrides are ``section.key`` names
    with dots written as double underscores (``build_model("glow-mnist", model__levels=2)``).

    >>> import torch
    >>> model = build_model("glow-toy-rings", model__hidden_channels=8)
    >>> model.log_prob(torch.randn(3, 2)).shape, model.sample(4).shape
    (torch.Size([3]), torch.Size([4, 2]))
    """
    if isinstance(name_or_config, Config):
        if overrides:
            raise ValueError("overrides apply to preset names or paths, not to a built Config")
        config = name_or_config
    else:
        config = load_config(name_or_config, {k.replace("__", "."): v for k, v in overrides.items()})
    if config.family not in FAMILIES:
        raise ValueError(f"model.family must be one of {', '.join(sorted(FAMILIES))}, got {config.family!r}")
    model = FAMILIES[config.family].build(config.model, config.data)
    model.config = config  # what invflow.save stores beside the weights
    return model
