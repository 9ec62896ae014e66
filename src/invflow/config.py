"""Typed configuration: YAML presets loaded into dataclasses (docs/architecture.md section 8).

A config has three sections, ``data``, ``model`` and ``train``. The ``model`` section's keys
depend on ``model.family``: this module knows only the generic part (reading YAML presets with
``base:`` inheritance, dotted overrides, strict typed loading of dataclasses); the family name ->
model-section dataclass mapping is the family registry in ``invflow.models.registry``, which
passes it to ``build_config``. Unknown keys and values of the wrong type are ``ValueError``s
naming the key. This module imports nothing else from invflow.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

PRESET_PACKAGE = "invflow.configs"


# Values quoted in errors are cut to a readable size: a configuration value can be arbitrarily
# large (a YAML alias bomb expands a few lines into millions of elements), so errors quote it with
# ``quote``, a ``reprlib`` representation bounded in depth and length; ``one_line`` is the CLI's
# last guard on a whole message.
QUOTE_CHARS = 200
MESSAGE_CHARS = 1000

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 6
_repr.maxstring = _repr.maxother = _repr.maxlong = QUOTE_CHARS


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def quote(value: Any) -> str:
    """``repr(value)`` of at most about ``QUOTE_CHARS`` characters, nested containers abbreviated."""
    return _cut(_repr.repr(value), QUOTE_CHARS)


def one_line(message: object) -> str:
    """``message`` on one line and at most about ``MESSAGE_CHARS`` characters."""
    return _cut(" ".join(str(message).split("\n")), MESSAGE_CHARS)


def shorten(text: str) -> str:
    """``text`` cut to about ``QUOTE_CHARS`` characters (a key or a list of keys in an error)."""
    return _cut(text, QUOTE_CHARS)


@dataclass
class DataConfig:
    """What to train on. ``image_size`` None keeps the data set's native size; ``num_workers`` > 0
    prepares that many batches ahead in a background thread (pinned on CUDA).

    Training-time preprocessing (Chen et al. 2019, app. E, "Preprocessing"): ``flip`` flips each
    image horizontally with probability 1/2; ``crop`` > 0 reflection-pads each image by ``crop``
    pixels and takes a random window of the original size (0: no crop). They replace the old
    single ``augment`` switch (see :func:`migrate_legacy_keys`).

    Image folders (``dataset: folder``) have no official split: ``folder_test_images`` N holds out
    N images drawn at random with ``folder_split_seed`` (Lu & Huang 2020, app. D: "randomly hold out
    3,000 images as a test set"); None keeps the last tenth of the sorted file names.
    ``folder_labels`` labels each image by the sub-folder it is in (``root/<class>/…``), for
    conditional models; a folder laid out otherwise is refused by name.
    """

    dataset: str = "mnist"
    image_size: int | None = None
    n_bits: int = 8
    batch_size: int = 64
    data_dir: str | None = None
    num_workers: int = 0
    flip: bool = False
    crop: int = 0
    folder_test_images: int | None = None
    folder_split_seed: int = 0
    folder_labels: bool = False  # class labels from one sub-folder per class (sorted names: 0, 1, …)
    toy_samples: int = 50_000

    def validate(self) -> None:
        positive(self, "batch_size", "num_workers", "toy_samples", "crop", "folder_test_images",
                 allow_zero=("num_workers", "crop"))
        check_n_bits(self.n_bits, "data.n_bits")
        if self.image_size is not None:
            positive(self, "image_size")


MAX_GRID_SAMPLES = 10_000  # one PNG grid of 100 x 100 tiles


@dataclass
class TrainConfig:
    """The optimisation recipe; counts are optimizer steps."""

    steps: int = 10_000
    lr: float = 1e-3
    warmup_steps: int = 100
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    ema_decay: float = 0.999
    ema_schedule: Literal["warmup", "constant"] = "warmup"
    eval_every: int = 1000
    eval_batches: int | None = None
    sample_every: int = 1000
    checkpoint_every: int = 500
    checkpoint_minutes: float | None = None
    keep_checkpoints: int = 3
    log_every: int = 10
    max_nonfinite: int = 20
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    threads: int | None = None
    retain_freed_memory: bool = True  # glibc keeps freed blocks for the next step (train/heap.py)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    n_samples_grid: int = 64
    sample_temperature: float = 1.0
    tensorboard: bool = True

    def validate(self) -> None:
        positive(self, "steps", "lr", "eval_every", "sample_every", "checkpoint_every",
                 "keep_checkpoints", "log_every", "max_nonfinite", "n_samples_grid")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None:
            positive(self, "grad_clip")
        if self.threads is not None:
            positive(self, "threads")
        if not self.sample_temperature >= 0:
            raise ValueError(f"train.sample_temperature must be >= 0, got {self.sample_temperature}")
        if self.eval_batches is not None:
            positive(self, "eval_batches")
        if self.checkpoint_minutes is not None:
            positive(self, "checkpoint_minutes")
        if self.n_samples_grid > MAX_GRID_SAMPLES:
            raise ValueError(
                f"train.n_samples_grid must be <= {MAX_GRID_SAMPLES} (one PNG grid), "
                f"got {self.n_samples_grid}"
            )


@dataclass
class Config:
    """A resolved configuration: what ``invflow train`` runs. ``model`` is the dataclass the
    family registry (``invflow.models.registry``) names for ``family``."""

    data: DataConfig
    model: Any
    train: TrainConfig
    family: str
    name: str = "custom"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping checkpoints and ``config.yaml`` store (``family`` inside ``model``)."""
        return {"data": plain(self.data), "model": {"family": self.family, **plain(self.model)},
                "train": plain(self.train), "name": self.name, "description": self.description}


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-ready data: dataclasses as mappings, a nested choice (an object with
    ``to_config``) as its own mapping, lists copied."""
    if hasattr(value, "to_config"):
        return value.to_config()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


MAX_BITS = 8  # images are uint8: n_bits keeps their n most significant bits


def check_n_bits(n_bits: Any, name: str = "n_bits") -> None:
    """Raise ValueError unless ``n_bits`` is an integer in ``[1, MAX_BITS]``: the one check of the
    bit depth, for the config (``name="data.n_bits"``) and the data functions alike."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= MAX_BITS:
        raise ValueError(f"{name} must be an integer in [1, {MAX_BITS}], got {n_bits!r}")


def positive(obj: Any, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` unless each named attribute is > 0 (>= 0 for ``allow_zero``)."""
    section = getattr(obj, "SECTION", type(obj).__name__.replace("Config", "").lower())
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if value < 0 or (value == 0 and name not in allow_zero):
            bound = ">= 0" if name in allow_zero else "> 0"
            raise ValueError(f"{section}.{name} must be {bound}, got {value}")


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    root = resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def presets() -> dict[str, str]:
    """Preset name -> one-line description."""
    return {name: _read_raw(name).get("description", "") for name in preset_names()}


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML ({err})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a config must be a mapping, got {type(raw).__name__}")
    return raw


def _read_raw(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a preset or YAML file, with ``base:`` inheritance resolved."""
    name = str(name_or_path)
    if name in seen:
        raise ValueError(f"config inheritance cycle: {' -> '.join(seen + (name,))}")
    preset = resources.files(PRESET_PACKAGE) / f"{name}.yaml"
    if preset.is_file():
        raw = _read_yaml(preset.read_text(), f"preset {name}")
    elif name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = _read_yaml(path.read_text(), str(path))
    else:
        raise ValueError(
            f"unknown preset {quote(name)}; `invflow configs` lists the presets "
            f"(or pass a path to a .yaml file)"
        )
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_raw(base, seen + (name,))
    merged.pop("description", None)
    return _deep_merge(merged, raw)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key; a nested section that names another layer
    (``mixing: {name: me-woodbury, …}`` over a base's ``woodbury``) replaces the base's, whose options
    belong to the other layer."""
    out = dict(base)
    for key, value in top.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        if both and value.get("name", out[key].get("name")) == out[key].get("name"):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI ``section.key=value``; the value is read as YAML (``3``, ``1e-3``, ``true``,
    ``[1, 2]``)."""
    if "=" not in text:
        raise ValueError(f"--set expects section.key=value, got {quote(text)}")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string; users mean a number.
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set ``section.key`` and, inside a nested choice, ``section.key.option`` (``model.mixing.kernel_size``:
    a choice given by its name alone becomes ``{name: …}``). Whole keys are set before options, so
    ``model.mixing=periodic`` never drops a ``model.mixing.kernel_size`` given beside it."""
    for dotted, value in sorted(overrides.items(), key=lambda item: item[0].count(".")):
        parts = dotted.split(".")
        if len(parts) not in (2, 3) or parts[0] not in ("data", "model", "train") or not all(parts):
            raise ValueError(
                f"config key {quote(dotted)} must be section.key (or section.key.option) with section "
                "one of data, model, train"
            )
        section, key = parts[:2]
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ValueError(f"config section {quote(section)} must be a mapping")
        if len(parts) == 2:
            raw[section][key] = value
            continue
        nested = raw[section].get(key, {})
        if isinstance(nested, str):
            nested = {"name": nested}
        if not isinstance(nested, dict):
            raise ValueError(
                f"config key {quote(dotted)}: {section}.{key} is not a nested section here "
                f"(it is {quote(nested)})"
            )
        raw[section][key] = {**nested, parts[2]: value}


def _as_float(value: Any, key: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {quote(value)}")
    if not math.isfinite(value):  # nan slips through every range check; inf is never meant
        raise ValueError(f"{key} must be a finite number, got {quote(value)}")
    return float(value)


INT64 = (-(2**63), 2**63 - 1)  # what torch (seeds, sizes) can hold


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {quote(value)}")
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError(f"{key} must be an integer in [-2^63, 2^63 - 1], got {value}")
    return value


def _as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {quote(value)}")
    return value


def _as_str(value: Any, key: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"{key} must be a string, got {quote(value)}")
    return str(value)


_SCALARS = {float: _as_float, int: _as_int, bool: _as_bool, str: _as_str}


def _coerce_union(value: Any, args: tuple, key: str) -> Any:
    """The first member of ``Optional[...]`` / ``A | B`` that accepts ``value``, else its error."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, key)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(errors[0] if errors else f"{key}: bad value {quote(value)}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint; ints are accepted for floats. Returns the value."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args, key)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, args))}, got {quote(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {quote(value)}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if hint in _SCALARS:
        return _SCALARS[hint](value, key)
    if isinstance(hint, type) and hasattr(hint, "from_config"):  # a nested, named choice
        return hint.from_config(value, key)
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def build_section(cls: type, raw: dict[str, Any], section: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``; unknown keys and bad types are ``ValueError``s."""
    if not isinstance(raw, dict):
        raise ValueError(f"config section {quote(section)} must be a mapping, got {quote(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        known = f"known keys: {', '.join(sorted(names))}" if names else f"{section} takes no options"
        raise ValueError(f"unknown config key {section}.{shorten(str(unknown[0]))}; {known}")
    values = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in raw.items()}
    obj = cls(**values)
    obj.validate()
    return obj


LEGACY_AUGMENT_PADDING = 4  # what data.augment=true cropped with (reflection padding, pixels)


def migrate_legacy_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """Read configs written before ``data.augment`` was split into ``data.flip``/``data.crop``.

    ``augment: true`` did a random crop after 4-pixel reflection padding and, except on MNIST and
    SVHN, a random horizontal flip; it becomes exactly that (``crop: 4``, ``flip``), so old run
    directories and checkpoints load and resume bit-for-bit, with a warning naming the new keys.
    ``augment`` together with ``flip`` or ``crop`` is an error. Returns a new mapping.
    """
    data = raw.get("data")
    if not isinstance(data, dict) or "augment" not in data:
        return raw
    data = dict(data)
    augment = data.pop("augment")
    if "flip" in data or "crop" in data:
        raise ValueError("data.augment was replaced by data.flip and data.crop; give only the new keys")
    if not isinstance(augment, bool):
        raise ValueError(f"data.augment must be true or false, got {augment!r}")
    if augment:
        data["crop"] = LEGACY_AUGMENT_PADDING
        # the data sets whose registry entry is not mirror_symmetric (this module imports no registry)
        data["flip"] = data.get("dataset", DataConfig.dataset) not in ("mnist", "svhn")
    warnings.warn(
        f"data.augment is deprecated (read as data.crop={data.get('crop', 0)}, "
        f"data.flip={data.get('flip', False)}); "
        "set data.flip and data.crop instead",
        DeprecationWarning,
        stacklevel=3,
    )
    return {**raw, "data": data}


def build_config(raw: dict[str, Any], model_sections: dict[str, type], name: str = "custom") -> Config:
    """Build a validated ``Config`` from a plain mapping (as stored in checkpoints), the ``model``
    section as the dataclass ``model_sections[model.family]``."""
    raw = migrate_legacy_keys(dict(raw))
    unknown = sorted(set(raw) - {"data", "model", "train", "name", "description"})
    if unknown:
        raise ValueError(f"unknown config section {quote(unknown[0])}; sections are data, model, train")
    model_raw = dict(raw.get("model") or {})
    family = model_raw.pop("family", None)
    if family not in model_sections:
        raise ValueError(
            f"model.family must be one of {', '.join(sorted(model_sections))}, got {quote(family)}"
        )
    section = model_sections[family]
    if hasattr(section, "migrate"):  # a family's own legacy keys, read as their replacements
        model_raw = section.migrate(model_raw)
    return Config(
        data=build_section(DataConfig, raw.get("data") or {}, "data"),
        model=build_section(section, model_raw, "model"),
        train=build_section(TrainConfig, raw.get("train") or {}, "train"),
        family=family,
        name=str(raw.get("name", name)),
        description=str(raw.get("description", "")),
    )


def read_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw mapping of a preset by name (``invflow configs``) or a YAML file, ``base:`` resolved
    and ``section.key`` overrides applied; ``invflow.models.load_config`` types it."""
    raw = _read_raw(name_or_path)
    _apply_overrides(raw, overrides or {})
    name = (
        Path(str(name_or_path)).stem if str(name_or_path).endswith((".yaml", ".yml")) else str(name_or_path)
    )
    raw.setdefault("name", name)
    return raw


def dump_config(config: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


__all__ = [
    "Config", "DataConfig", "TrainConfig", "build_config", "read_config", "presets", "preset_names",
    "parse_override", "dump_config", "positive", "migrate_legacy_keys",
]
