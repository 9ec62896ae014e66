"""Loading trained models back (docs/architecture.md section 8)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.models import build_model
from invflow.train.checkpoint import CheckpointError
from invflow.train.run_dir import RunDir, checkpoint_config, resolve_checkpoint


@dataclass
class LoadedModel:
    """A model with where it came from: the checkpoint file, its step, EMA or raw weights, and
    the unreadable newer files that were skipped (each already announced as a warning)."""

    model: FlowModel
    config: Config
    path: Path
    step: int
    ema: bool
    fallbacks: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``runs/x/checkpoints/last.pt (step 1500, EMA weights)``, the line every loading command prints."""
        return f"{self.path} (step {self.step}, {'EMA' if self.ema else 'raw'} weights)"

    @property
    def run_root(self) -> Path | None:
        """The run directory the checkpoint belongs to (``RUN/checkpoints/*.pt``); ``None`` for a
        checkpoint file elsewhere."""
        run = RunDir.of_checkpoint(self.path)
        return None if run is None else run.root


def load_model(path_or_run_dir: str | Path, ema: bool = True) -> LoadedModel:
    """The model of a checkpoint file or run directory (newest good checkpoint), in eval mode,
    with the EMA weights unless ``ema=False``, and its provenance."""
    found = resolve_checkpoint(path_or_run_dir)
    config = checkpoint_config(found.state, found.path)
    model = build_model(config)
    weights = found.state["ema"] if ema else found.state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"{found.path}: weights do not fit the model of its config: {str(err).splitlines()[0]}") from None
    return LoadedModel(model.eval(), config, found.path, found.step, ema, found.fallbacks())


def load_checkpoint(path_or_run_dir: str | Path, ema: bool = True) -> tuple[FlowModel, Config]:
    """The model of a checkpoint file or run directory (newest good checkpoint), in eval mode,
    with the EMA weights unless ``ema=False``."""
    loaded = load_model(path_or_run_dir, ema)
    return loaded.model, loaded.config
