"""invflow: invertible generative flows on images — residual flows, Glow and Woodbury flows.

The public names below are imported on first use (PEP 562), so that ``import invflow.config`` or
``import invflow.data`` loads no model code (docs/architecture.md, "Layers of the package").
"""
from __future__ import annotations

import importlib
from typing import Any

from invflow.version import __version__

# public name -> the module defining it
_EXPORTS = {
    "Config": "invflow.config",
    "presets": "invflow.config",
    "Flow": "invflow.core.flow",
    "InverseFlow": "invflow.core.flow",
    "SequentialFlow": "invflow.core.flow",
    "FlowModel": "invflow.core.model",
    "StandardNormal": "invflow.core.distributions",
    "ActNorm": "invflow.layers",
    "AdditiveCoupling": "invflow.layers",
    "AffineCoupling": "invflow.layers",
    "InvConv1x1": "invflow.layers",
    "LogitTransform": "invflow.layers",
    "Squeeze": "invflow.layers",
    "FactorOut": "invflow.layers",
    "SplineCoupling": "invflow.layers",
    "WoodburyMixing": "invflow.layers",
    "MEWoodbury": "invflow.layers",
    "InvertibleResidualBlock": "invflow.residual",
    "build_model": "invflow.models",
    "load_config": "invflow.models",
    "load_checkpoint": "invflow.api",
    "save": "invflow.model_file",
    "load": "invflow.model_file",
    "ContextSpec": "invflow.core.context",
    "Prior": "invflow.core.model",
    "Flatten": "invflow.core.flow",
    "ConditionalGaussianPrior": "invflow.layers",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'invflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
