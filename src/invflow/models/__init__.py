"""Model builders: a config in, a ``FlowModel`` out (DESIGN.md section 8)."""
from __future__ import annotations

from typing import Any

from invflow.config import Config, load_config
from invflow.core.model import FlowModel
from invflow.models.glow import GlowConfig, build_glow
from invflow.models.input_shape import input_shape, is_toy
from invflow.models.hybrid import HybridConfig, build_hybrid
from invflow.models.resflow import ResFlowConfig, build_resflow

# model-config type -> builder(model config, data config)
BUILDERS = {
    GlowConfig: lambda model, data: build_glow(model, input_shape(data)),
    ResFlowConfig: lambda model, data: build_resflow(model, input_shape(data)),
    HybridConfig: lambda model, data: build_hybrid(model, input_shape(data), data.dataset),
}


def build_model(name_or_config: str | Config, **overrides: Any) -> FlowModel:
    """Build the model of a preset name, YAML path or ``Config``; overrides are ``section.key`` names
    with dots written as double underscores (``build_model("glow-mnist", model__levels=2)``)."""
    if isinstance(name_or_config, Config):
        if overrides:
            raise ValueError("overrides apply to preset names or paths, not to a built Config")
        config = name_or_config
    else:
        config = load_config(name_or_config, {k.replace("__", "."): v for k, v in overrides.items()})
    return BUILDERS[type(config.model)](config.model, config.data)


__all__ = ["build_model", "input_shape", "is_toy", "GlowConfig", "HybridConfig", "ResFlowConfig"]
