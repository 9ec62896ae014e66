"""The registries of a Glow step's mixing layers and couplings: config name -> options class.

This is the one place that knows which mixing layers and couplings a config can name
(``invflow.layers.choices`` explains the config form). Adding one is its module, with its
options class, plus one entry here (docs/architecture.md, "Adding a mixing or coupling layer").
"""
from __future__ import annotations

from invflow.layers.choices import CouplingChoice, LayerChoice, MixingChoice
from invflow.layers.coupling import AdditiveChoice, AffineChoice
from invflow.layers.emerging import EmergingMixing
from invflow.layers.invconv import LUMixing, PlainMixing
from invflow.layers.macow import MaCowChoice
from invflow.layers.periodic import PeriodicMixing
from invflow.layers.spline import SplineChoice
from invflow.layers.woodbury import MEWoodburyChoice, WoodburyChoice

MIXINGS: dict[str, type[MixingChoice]] = {
    choice.name: choice
    for choice in (PlainMixing, LUMixing, EmergingMixing, PeriodicMixing, WoodburyChoice, MEWoodburyChoice)
}
COUPLINGS: dict[str, type[CouplingChoice]] = {
    choice.name: choice for choice in (AffineChoice, AdditiveChoice, SplineChoice, MaCowChoice)
}
REGISTRIES: dict[str, dict[str, type[LayerChoice]]] = {"mixing": MIXINGS, "coupling": COUPLINGS}
