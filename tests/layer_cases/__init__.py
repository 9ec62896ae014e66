"""Layer cases for the shared harness: one module per family, each defining ``CASES``."""
