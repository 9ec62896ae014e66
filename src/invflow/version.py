"""invflow's version: a leaf module, so every layer of the package can read it without importing
the package root."""

__version__ = "0.3.0"
