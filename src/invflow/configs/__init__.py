"""Presets shipped inside the package: one YAML file per preset (`invflow configs` lists them)."""
