"""Model families and their registry: a config in, a ``FlowModel`` out (docs/architecture.md)."""
from __future__ import annotations

from invflow.models.glow import GlowConfig
from invflow.models.hybrid import HybridConfig
from invflow.models.registry import FAMILIES, Family, build_model, config_from_dict, load_config
from invflow.models.resflow import ResFlowConfig

__all__ = ["FAMILIES", "Family", "build_model", "config_from_dict", "load_config",
           "GlowConfig", "HybridConfig", "ResFlowConfig"]
