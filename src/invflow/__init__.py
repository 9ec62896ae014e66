"""invflow: invertible generative flows on images — residual flows, Glow and Woodbury flows."""
from invflow.config import Config, load_config, presets

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "presets", "__version__"]
