"""The run directory (docs/architecture.md section 6): config, environment, metrics, checkpoints,
samples, and the run's identity (``run.json``: a random id every checkpoint of the run carries, so
a checkpoint copied in from another run is refused by name)."""
from __future__ import annotations

import json
import os
import platform
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
import yaml

from invflow import run_files
from invflow.config import Config, dump_config, migrate_legacy_keys
from invflow.models import config_from_dict
from invflow.storage import DiskFullError, append_text, is_disk_full, write_atomic
from invflow.train.checkpoint import (
    CheckpointError,
    FoundCheckpoint,
    latest_good_checkpoint,
    load_checkpoint_file,
)

IDENTITY_FORMAT = 1


class RunDir:
    """Paths of one training run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / run_files.CHECKPOINTS
        self.samples = self.root / run_files.SAMPLES
        self.metrics = self.root / run_files.METRICS
        self.results = self.root / run_files.RESULTS
        self.config = self.root / run_files.CONFIG
        self.environment = self.root / run_files.ENVIRONMENT
        self.tensorboard = self.root / run_files.TENSORBOARD
        self.changes = self.root / run_files.CHANGES
        self.identity = self.root / run_files.IDENTITY
        self.held_out = self.root / run_files.HELD_OUT
        self.last_checkpoint = self.checkpoints / run_files.LAST_CHECKPOINT

    def checkpoint_at(self, step: int) -> Path:
        """The path of step ``step``'s checkpoint file."""
        return self.checkpoints / run_files.step_checkpoint(step)

    @classmethod
    def of_checkpoint(cls, path: Path) -> RunDir | None:
        """The run a checkpoint file lies in (``RUN/checkpoints/*.pt``); ``None`` for one elsewhere."""
        parent = Path(path).parent
        return cls(parent.parent) if parent.name == run_files.CHECKPOINTS else None

    def create(self) -> None:
        """Create the directories, with a clear error when the location is not writable."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.samples.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFullError(self.root) from None
            raise ValueError(f"cannot create run directory {self.root}: {err.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise ValueError(f"run directory {self.root} is not writable")
        if not self.identity.exists():  # a new run, or one from before 0.3.0 (its checkpoints carry no id)
            identity = {"format": IDENTITY_FORMAT, "run_id": uuid.uuid4().hex}
            write_atomic(self.identity, json.dumps(identity) + "\n")

    def run_id(self) -> str | None:
        """This run's id (``None`` for a run directory without ``run.json``); a ``ValueError``
        naming the file when it is damaged or from a newer invflow."""
        if not self.identity.is_file():
            return None
        try:
            record = json.loads(self.identity.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.identity}: the run's identity cannot be read ({e}); restore it"
                             ) from None
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
            raise ValueError(f"{self.identity}: not a run identity (expected {{'run_id': ...}})")
        if isinstance(record.get("format"), int) and record["format"] > IDENTITY_FORMAT:
            raise ValueError(f"{self.identity}: written by a newer invflow (format {record['format']}); "
                             "use that version")
        return record["run_id"]

    def check_belongs(self, state: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another run (copied in): its run id is not this run's. Checkpoints
        and runs from before 0.3.0 carry no id and are accepted."""
        theirs, ours = state.get("run_id"), self.run_id()
        if theirs is not None and ours is not None and theirs != ours:
            raise CheckpointError(f"{path} belongs to another run (run id {theirs}; {self.root} is run "
                                  f"{ours}): it was copied in from elsewhere; remove it from this run's "
                                  "checkpoints")

    def record_changes(self, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
        """Append the ``train`` settings a resume changed, and the step from which they hold, to
        ``changes.jsonl`` (one JSON object per change)."""
        append_text(self.changes, "".join(
            json.dumps({"step": step, "key": f"train.{key}", "from": old, "to": new}) + "\n"
            for key, (old, new) in changes.items()))

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.pt"))

    def recorded_data_dir(self) -> str | None:
        """``data.data_dir`` of the config this run recorded (``None`` when there is none)."""
        try:
            recorded = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError):
            return None
        data = recorded.get("data") if isinstance(recorded, dict) else None
        return data.get("data_dir") if isinstance(data, dict) else None

    def write_config(self, config: Config) -> None:
        write_atomic(self.config, dump_config(config))
        env = {**versions(), "python": sys.version.split()[0], "platform": platform.platform(),
               "threads": torch.get_num_threads(), "argv": sys.argv}
        write_atomic(self.environment, json.dumps(env, indent=2) + "\n")


def versions() -> dict[str, str]:
    """The invflow and torch versions, recorded beside every run and result."""
    from invflow.version import __version__

    return {"invflow": __version__, "torch": torch.__version__}


def comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that must match for a checkpoint to belong to a model (legacy keys
    read as their replacements)."""
    config_dict = migrate_legacy_keys(config_dict)
    return {"data": {k: v for k, v in config_dict["data"].items() if k not in ("data_dir", "num_workers")},
            "model": config_dict["model"]}


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the keys added since it was written set to their defaults (which keep
    the old behaviour), so that an added key is not a difference; as stored if it no longer validates."""
    try:
        return config_from_dict(saved).to_dict()
    except ValueError:
        return saved


def check_same_model(saved: dict[str, Any], config: Config, where: Path) -> None:
    """Raise ``CheckpointError`` if a checkpoint was written for a different model or data."""
    want, got = comparable(config.to_dict()), comparable(with_defaults(saved))
    for section in ("data", "model"):
        for key in sorted(set(want[section]) | set(got[section])):
            if want[section].get(key) != got[section].get(key):
                raise CheckpointError(
                    f"{where}: checkpoint is from another model ({saved.get('name', '?')}): "
                    f"{section}.{key} is {got[section].get(key)!r} there, {want[section].get(key)!r} here"
                )


def resolve_checkpoint(path_or_run: str | Path) -> FoundCheckpoint:
    """Load the checkpoint at a file path or the newest good one of a run directory (each
    unreadable file passed over is a ``CheckpointFallbackWarning``); a checkpoint inside a run
    directory must belong to that run (:meth:`RunDir.check_belongs`)."""
    path = Path(path_or_run)
    if path.is_dir():
        found = latest_good_checkpoint(RunDir(path).checkpoints)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in run directory {path}")
    else:
        found = FoundCheckpoint(load_checkpoint_file(path), path)
    run = RunDir.of_checkpoint(found.path)
    if run is not None:
        run.check_belongs(found.state, found.path)
    return found


def checkpoint_config(state: dict[str, Any], where: Path) -> Config:
    """The config stored in a checkpoint, validated."""
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"{where}: checkpoint lacks its config or model weights")
    return config_from_dict(state["config"])
