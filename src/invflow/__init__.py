"""invflow: invertible generative flows on images — residual flows, Glow and Woodbury flows."""
from invflow.api import load_checkpoint
from invflow.config import Config, load_config, presets
from invflow.core.flow import Flow, InverseFlow, SequentialFlow
from invflow.core.model import FlowModel
from invflow.models import build_model

__version__ = "0.1.0"
__all__ = ["Config", "Flow", "FlowModel", "InverseFlow", "SequentialFlow", "build_model",
           "load_checkpoint", "load_config", "presets", "__version__"]
