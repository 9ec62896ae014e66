"""Choosing a Glow step's mixing layer and coupling by name, with the chosen layer's own options.

In a config, ``model.mixing`` and ``model.coupling`` are each a nested section: a mapping with the
registered ``name`` and that layer's options, or just the name when the defaults do::

    model:
      mixing: {name: woodbury, latent_channel: [8, 8, 16], latent_spatial: [16, 16, 8]}
      coupling: spline          # the same as {name: spline}

A layer's options are a dataclass subclassing :class:`MixingChoice` or :class:`CouplingChoice` that
lives in the layer's own module, says its ``name`` and builds the layer (``build``). The registries,
``invflow.layers.registry.MIXINGS`` / ``COUPLINGS``, map names to those classes; adding a layer is
its module plus one line there plus its harness case (docs/architecture.md, "Adding a mixing or
coupling layer"). Strict typing and errors are ``invflow.config``'s: an unknown name or option is a
``ValueError`` naming the key and the known ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from invflow.config import build_section, quote
from invflow.core.flow import Flow


@dataclass
class LayerChoice:
    """A registered layer and its options (the fields of the subclass)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "mixing" or "coupling": the config key and the registry
    images_only: ClassVar[bool] = False  # True: refuses vector (2D toy) data, ``shape = (D,)``

    @property
    def SECTION(self) -> str:  # noqa: N802  (the name ``invflow.config.positive`` reads)
        """The config key of these options: ``model.mixing`` or ``model.coupling``."""
        return f"model.{self.kind}"

    def validate(self) -> None:
        """Raise ``ValueError`` for bad options (their types are already checked)."""

    def check_levels(self, levels: int) -> None:
        """Raise ``ValueError`` if a per-level option does not have one entry per level."""
        for option in dataclasses.fields(self):
            values = getattr(self, option.name)
            if isinstance(values, list) and (len(values) != levels or min(values) < 1):
                raise ValueError(f"{self.SECTION}.{option.name} needs {levels} positive entries "
                                 f"(one per level), got {values}")

    def check_data(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if the layer needs images and per-sample ``shape`` is a vector's."""
        if len(shape) == 1 and self.images_only:
            usable = ", ".join(repr(name) for name, other in self.registry().items() if not other.images_only)
            raise ValueError(f"{self.SECTION}={self.name!r} needs image data; on vector (2D toy) data "
                             f"use one of {usable}")

    def to_config(self) -> dict[str, Any]:
        """The plain mapping a config file and a checkpoint store: the name and every option."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def registry(cls) -> dict[str, type[LayerChoice]]:
        from invflow.layers.registry import REGISTRIES

        return REGISTRIES[cls.kind]

    @classmethod
    def from_config(cls, value: Any, key: str) -> LayerChoice:
        """The options of ``value`` (a name or ``{name: …, option: …}``) at config key ``key``."""
        if isinstance(value, LayerChoice):
            value = value.to_config()
        options = {"name": value} if isinstance(value, str) else value
        if not isinstance(options, dict):
            raise ValueError(f"{key} must be a layer name or a mapping with a name, got {quote(value)}")
        options = dict(options)
        name = options.pop("name", None)
        known = cls.registry()
        if name not in known:
            if name is None:
                raise ValueError(f"{key} needs a name, one of {', '.join(map(repr, known))}")
            raise ValueError(f"{key} must be one of {', '.join(map(repr, known))}, got {quote(name)}")
        return build_section(known[name], options, key)


@dataclass
class MixingChoice(LayerChoice):
    """Options of a mixing layer: an invertible channel/spatial mixing with no conditioner (so it
    stays unconditional in a conditional model)."""

    kind: ClassVar[str] = "mixing"
    images_only: ClassVar[bool] = True

    def build(self, shape: tuple[int, ...], level: int) -> Flow:
        """The layer for per-sample ``shape`` at level ``level`` (0-based; per-level options)."""
        raise NotImplementedError


@dataclass
class KernelMixing(MixingChoice):
    """Options of a mixing convolution with an odd ``kernel_size`` × ``kernel_size`` kernel."""

    kernel_size: int = 3

    def validate(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"{self.SECTION}.kernel_size must be a positive odd integer, got {self.kernel_size}"
            )


@dataclass
class CouplingChoice(LayerChoice):
    """Options of a coupling layer: its conditioner reads half the input and the context."""

    kind: ClassVar[str] = "coupling"

    def build(self, shape: tuple[int, ...], hidden: int, swap: bool, context: int) -> Flow:
        """The layer for per-sample ``shape``, ``hidden`` conditioner width, the halves swapped when
        ``swap``, reading a context of width ``context`` (0: none)."""
        raise NotImplementedError
