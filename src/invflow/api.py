"""Loading trained models back and evaluating them (docs/architecture.md section 8)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invflow.config import Config
from invflow.core.model import FlowModel
from invflow.data.splits import describe_provenance
from invflow.models import build_model
from invflow.train.checkpoint import CheckpointError
from invflow.train.evaluate import EvalResult
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


@dataclass
class Evaluation:
    """One evaluation of a trained model, with its provenance: the checkpoint (file, step, EMA or
    raw weights), the data (data set, split, directory, counts: ``data``), the package versions,
    the result (mean ± standard error; ``-log p(x | y)`` for a conditional model) and, for a
    class-conditional model, the generative classifier's ``(accuracy, count)``."""

    name: str  # the config's name (the preset)
    checkpoint: str
    step: int
    ema: bool
    split: str
    result: EvalResult
    data: dict[str, Any]
    versions: dict[str, str]
    conditioned_on: str | None = None  # "label" or "context" for a conditional model
    generative_accuracy: tuple[float, int] | None = None

    def lines(self) -> list[str]:
        """What ``invflow eval`` prints, line by line."""
        out = [f"checkpoint: {self.checkpoint}", f"data: {describe_provenance(self.data)}",
               "versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items())]
        if self.conditioned_on is not None:
            out.append(f"conditional: {self.result.metric} is -log p(x | y) given each example's "
                       f"{self.conditioned_on}")
        out.append(f"{self.name} ({'EMA' if self.ema else 'raw'} weights, {self.split} split): {self.result}")
        if self.generative_accuracy is not None:
            accuracy, count = self.generative_accuracy
            out.append(f"generative classifier argmax_y log p(x | y) (uniform p(y)): accuracy {accuracy:.4f} "
                       f"on {count} examples")
        return out


def evaluate(run: str | Path, split: str = "test", *, data_dir: str | None = None, batches: int | None = None,
             ema: bool = True, device: str = "auto", seed: int = 0,
             generative_classifier: bool = True) -> Evaluation:
    """Evaluate a run directory or checkpoint file on ``split`` (an image-folder run: the held-out
    files it recorded), on the first ``batches`` batches (default all), with the EMA weights unless
    ``ema=False``; for a class-conditional model also the generative classifier (one pass per
    class; ``generative_classifier=False`` skips it). What ``invflow eval`` prints."""
    from invflow.data.registry import is_toy
    from invflow.data.splits import data_provenance, load_split, run_held_out_set
    from invflow.train.distributed import select_device
    from invflow.train.evaluate import evaluate as evaluate_batches
    from invflow.train.evaluate import generative_classifier_accuracy, held_out_batches
    from invflow.train.run_dir import versions

    loaded = load_model(run, ema=ema)
    config, model = loaded.config, loaded.model
    target = select_device(device)
    model.to(target)
    held = run_held_out_set(config, loaded.run_root, data_dir)
    data = None if is_toy(config.data) else load_split(config, split, data_dir, held)
    objective = model.make_objective(config.data.n_bits)
    result = evaluate_batches(model, objective, held_out_batches(config, data, batches), target, seed=seed)
    spec = model.context_spec
    accuracy = None
    if generative_classifier and spec is not None and spec.is_class:
        accuracy = generative_classifier_accuracy(model, objective, held_out_batches(config, data, batches),
                                                  target, seed=seed)
    return Evaluation(
        config.name, loaded.describe(), loaded.step, ema, split, result,
        data_provenance(config, split, data_dir, result.count, None if data is None else len(data)),
        versions(), None if spec is None else ("label" if spec.is_class else "context"), accuracy)
