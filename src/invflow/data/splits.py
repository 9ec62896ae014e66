"""A config's evaluation data: its split loaded (an image-folder run's recorded held-out files),
where the samples come from (provenance) and what a run's figures measure (unit and data)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from invflow import run_files
from invflow.config import Config
from invflow.data import held_out
from invflow.data.held_out import HeldOutSet
from invflow.data.registry import held_out_files, input_shape, is_toy, needs_held_out_record


def load_split(config: Config, split: str, data_dir: str | None = None, held_out: HeldOutSet | None = None):
    """The ``ImageData`` of an image config's split (``data_dir`` overrides ``data.data_dir``); an
    image folder's run passes its ``held_out`` set (:func:`run_held_out_set`)."""
    from invflow.data import load_image_split

    d = config.data
    data = load_image_split(d.dataset, split, data_dir or d.data_dir, d.image_size, d.n_bits,
                            folder_test_images=d.folder_test_images, folder_split_seed=d.folder_split_seed,
                            folder_labels=d.folder_labels, folder_held_out=held_out)
    check_model_data(config, data)
    return data


def run_held_out_set(config: Config, run_root: Path | None, data_dir: str | None = None,
                     announce_missing: bool = True) -> HeldOutSet | None:
    """An image-folder run's held-out files: its record (``RUN/test_split.json``) when it has one,
    else chosen now by the config's rule (and, when ``announce_missing``, a warning that they are
    the run's only if the folder is unchanged); ``None`` for data sets with an official split."""
    if not needs_held_out_record(config.data):
        return None
    record = None if run_root is None else Path(run_root) / run_files.HELD_OUT
    if record is not None and record.is_file():
        return held_out.read(record)
    folder = data_dir or config.data.data_dir
    rule, files = held_out_files(config.data, folder)
    if announce_missing:
        where = f"{run_root} has no {run_files.HELD_OUT}" if run_root else "no run directory"
        warnings.warn(f"{where}: the held-out files are chosen again by the rule ({rule}); they are the "
                      "run's own only if the folder has not changed", UserWarning, stacklevel=2)
    return held_out.chosen(Path(folder).expanduser(), files, rule)


def check_model_data(config: Config, data) -> None:
    """Let the model section refuse data it cannot learn from: a section may define
    ``check_data(data, config)`` (the hybrid classifier refuses unlabelled data); the data layer
    itself knows no model family."""
    check = getattr(config.model, "check_data", None)
    if callable(check):
        check(data, config)


def data_provenance(config: Config, split: str, data_dir: str | None, evaluated: int | None,
                    available: int | None = None) -> dict[str, Any]:
    """Where an evaluation's samples come from: data set, split, directory (absolute) and counts."""
    d = config.data
    if is_toy(d):
        return {
            "dataset": d.dataset,
            "split": f"held-out sample (seed {config.train.seed})",
            "data_dir": None,
            "count": evaluated,
            "available": d.toy_samples,
        }
    where = data_dir or d.data_dir
    where = str(Path(where).resolve()) if where else "the invflow cache ($INVFLOW_CACHE or ~/.cache/invflow)"
    return {
        "dataset": d.dataset,
        "split": split,
        "data_dir": where,
        "count": evaluated,
        "available": available,
    }


UNITS = {"bpd": "bits/dim", "bits": "bits per point"}


def describe_measure(config: Config) -> str:
    """What a run's train and test figures measure: the unit and the data, e.g. ``bits/dim of
    mnist (train batches; test: the test split), 1x28x28 images at 8 bits``."""
    d = config.data
    metric = "bits" if is_toy(d) else "bpd"
    if is_toy(d):
        data = (f"the {d.dataset} density (test: a held-out sample of {d.toy_samples} points, "
                f"seed {config.train.seed})")
    else:
        shape = "x".join(str(s) for s in input_shape(d))
        test = ("the held-out files in the run's test_split.json" if needs_held_out_record(d)
                else "its test split")
        data = f"{d.dataset} (test: {test}), {shape} images at {d.n_bits} bits"
    return f"{UNITS[metric]} of {data}; test figures use the EMA weights"


def describe_provenance(p: dict[str, Any]) -> str:
    """One line: ``mnist test split from /data/mnist, 10000 of 10000 images``."""
    of = f" of {p['available']}" if p.get("available") is not None else ""
    if p.get("data_dir") is None:
        return f"{p['dataset']} {p['split']}, {p['count']}{of} points"
    return f"{p['dataset']} {p['split']} split from {p['data_dir']}, {p['count']}{of} images"
