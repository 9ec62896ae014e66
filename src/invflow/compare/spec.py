"""What a comparison runs: presets, seeds, shared overrides and one budget for every run.

Shipped specs live in ``invflow/configs/compare/<name>.yaml``::

    description: one line
    presets: [glow-cifar10-tiny, woodbury-glow-cifar10-tiny]
    seeds: 3
    steps: 1500            # or  minutes: 20  (wall-clock per run)
    set:                   # overrides applied to every preset
      data.dataset: mnist
      data.image_size: 16
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from invflow.config import Config, quote, shorten
from invflow.data.registry import input_shape, is_toy
from invflow.models import load_config

SPEC_PACKAGE = "invflow.configs"
SPEC_FOLDER = "compare"
SPEC_KEYS = {"description", "presets", "seeds", "steps", "minutes", "set"}


@dataclass(frozen=True)
class Budget:
    """The same training budget for every run: a step count or wall-clock minutes per run."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("a comparison needs exactly one budget: --steps S or --minutes M")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps <= 0):
            raise ValueError(f"steps must be a positive integer, got {quote(self.steps)}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {quote(self.minutes)}")

    def as_dict(self) -> dict[str, float]:
        return {"steps": self.steps} if self.steps is not None else {"minutes": self.minutes}


@dataclass(frozen=True)
class CompareSpec:
    """Presets × seeds ``0..seeds-1``, each trained under ``budget`` with ``overrides`` applied."""

    presets: tuple[str, ...]
    seeds: int
    budget: Budget
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = "compare"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.presets:
            raise ValueError("compare needs at least one preset (or --spec NAME)")
        if len(set(self.presets)) != len(self.presets):
            raise ValueError(f"a preset is listed twice: {', '.join(self.presets)}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {quote(self.seeds)}")
        for key in ("train.seed", "train.steps"):
            if key in self.overrides:
                raise ValueError(f"compare sets {key} itself (use --seeds / --steps); drop --set {key}")

    def config(self, preset: str, seed: int) -> Config:
        """The resolved config of one run. In a wall-clock budget ``train.steps`` is raised by the
        runner chunk by chunk, so it is left at the preset's value here."""
        overrides = {**self.overrides, "train.seed": seed}
        if self.budget.steps is not None:
            overrides["train.steps"] = self.budget.steps
        return load_config(preset, overrides)

    def measured_quantity(self, preset: str) -> str:
        """What a preset's test number measures: unit, data set, size and bit depth (and whether it
        is conditional), e.g. ``bits/dim of mnist 1x28x28 at 8 bits`` or ``bits per point of rings``."""
        config = self.config(preset, 0)
        data = config.data
        conditional = " given its labels" if getattr(config.model, "conditional", False) else ""
        if is_toy(data):
            return f"bits per point of {data.dataset}{conditional}"
        size = "x".join(map(str, input_shape(data)))
        return f"bits/dim of {data.dataset} {size} at {data.n_bits} bits{conditional}"

    def check_one_quantity(self) -> None:
        """Refuse, before any training, presets whose numbers measure different things (another
        unit, data set, size, bit depth, or p(x | y) beside p(x)): one table ranks one quantity."""
        quantities = {preset: self.measured_quantity(preset) for preset in self.presets}
        first = self.presets[0]
        for preset, quantity in quantities.items():
            if quantity != quantities[first]:
                raise ValueError(f"compare ranks one quantity, but {first} measures {quantities[first]} and "
                                 f"{preset} {quantity}; compare them separately, or align them with --set")

    def identity(self) -> dict[str, Any]:
        """What every run in one output folder must share (presets and seeds may be added later)."""
        return {"set": dict(sorted(self.overrides.items())), "budget": self.budget.as_dict()}

    def with_cli(self, seeds: int | None, steps: int | None, minutes: float | None,
                 overrides: dict[str, Any]) -> CompareSpec:
        """This spec with command-line values taking precedence (``--set`` keys added or replaced)."""
        budget = Budget(steps, minutes) if steps is not None or minutes is not None else self.budget
        return replace(self, seeds=self.seeds if seeds is None else seeds, budget=budget,
                       overrides={**self.overrides, **overrides})


def spec_names() -> list[str]:
    """Names of the comparison specs shipped inside the package."""
    root = resources.files(SPEC_PACKAGE) / SPEC_FOLDER
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str) -> CompareSpec:
    """A shipped spec by name, or a spec YAML file by path; unknown keys are errors."""
    shipped = resources.files(SPEC_PACKAGE) / SPEC_FOLDER / f"{name_or_path}.yaml"
    if shipped.is_file():
        text, source, name = shipped.read_text(), f"comparison spec {name_or_path}", name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no comparison spec {quote(name_or_path)}: not a file, and not one of the shipped specs "
                f"({', '.join(spec_names())})")
        text, source, name = path.read_text(), str(path), path.stem
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a comparison spec must be a mapping")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {shorten(', '.join(map(str, unknown)))}; "
                         f"allowed: {', '.join(sorted(SPEC_KEYS))}")
    presets = raw.get("presets") or []
    overrides = raw.get("set") or {}
    if not isinstance(presets, list) or not isinstance(overrides, dict):
        raise ValueError(f"{source}: 'presets' must be a list and 'set' a mapping of section.key: value")
    try:
        return CompareSpec(tuple(presets), raw.get("seeds", 3), Budget(raw.get("steps"), raw.get("minutes")),
                           dict(overrides), name, raw.get("description", ""))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
