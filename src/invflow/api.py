"""Loading trained models back (docs/architecture.md section 8)."""
from __future__ import annotations

from pathlib import Path

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.models import build_model
from invflow.train.checkpoint import CheckpointError
from invflow.train.run_dir import checkpoint_config, resolve_checkpoint


def load_checkpoint(path_or_run_dir: str | Path, ema: bool = True) -> tuple[FlowModel, Config]:
    """The model of a checkpoint file or run directory (newest good checkpoint), in eval mode,
    with the EMA weights unless ``ema=False``."""
    state, path = resolve_checkpoint(path_or_run_dir)
    config = checkpoint_config(state, path)
    model = build_model(config)
    weights = state["ema"] if ema else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of its config: {str(err).splitlines()[0]}") from None
    return model.eval(), config
