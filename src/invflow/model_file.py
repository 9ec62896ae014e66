"""One file per model: ``invflow.save(model, path)`` / ``invflow.load(path)`` (docs/architecture.md
section 8).

The file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file (the format the field
shares weights in; read without pickle, so loading a file cannot run code): the weights, and in its
metadata the model's resolved config (JSON), its dtype and the format and invflow versions.
``load`` builds the model from that config and loads the weights strictly, so a file whose weights
do not fit its config, a file of another format or a newer one is refused by name. Tensors shared
between layers (e.g. one learned norm order of a whole residual block) are stored once
(``safetensors.torch.save_model``). Writing goes through a temporary file and a rename, and an
existing file is replaced only with ``overwrite=True``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from invflow.core.model import FlowModel
from invflow.models import build_model, config_from_dict
from invflow.storage import replace_atomic
from invflow.version import __version__

FORMAT = "invflow.model"
FORMAT_VERSION = 1


def save(model: FlowModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` (built by ``build_model``, which records its config) and its config to
    ``path``; refuses an existing file unless ``overwrite``."""
    path = Path(path)
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("invflow.save needs a model built from a preset or config (invflow.build_model); "
                         "for a model assembled by hand, save model.state_dict() with torch.save")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "invflow": __version__,
                "dtype": str(model.dtype).removeprefix("torch."), "config": json.dumps(config.to_dict())}
    return replace_atomic(path, lambda tmp: save_model(model, tmp, metadata=metadata))


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of an invflow model file, or a one-line ``ValueError`` saying what it is not."""
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a safetensors file ({str(err).splitlines()[0]}); invflow.load "
                         "reads files written by invflow.save (for a checkpoint use invflow.load_checkpoint)"
                         ) from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an invflow model (no {FORMAT!r} metadata)")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by invflow {metadata.get('invflow', '?')} in model-file "
                         f"format {version}; this invflow ({__version__}) reads format {FORMAT_VERSION}: "
                         "upgrade invflow")
    return metadata


def load(path: str | Path) -> FlowModel:
    """The model saved at ``path`` by ``save``: built from its config, in its dtype, weights loaded
    strictly, in eval mode; ``model.config`` is the config."""
    path = Path(path)
    metadata = read_metadata(path)
    config = config_from_dict(json.loads(metadata["config"]))
    model = build_model(config).to(getattr(torch, metadata["dtype"]))
    try:
        load_model(model, str(path), strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"{path}: weights do not fit the model of its config: {first}") from None
    return model.eval()
