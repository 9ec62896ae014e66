"""A checkpoint written before a config key existed still belongs to its model: keys added since
(``model.conditional``, ``model.backward_in_forward``, ``data.folder_labels``) read as their
defaults, which keep the old behaviour, rather than as differences."""

from __future__ import annotations

from pathlib import Path

import pytest

from invflow import load_config
from invflow.train.checkpoint import CheckpointError
from invflow.train.run_dir import check_same_model


@pytest.mark.parametrize("name", ["glow-mnist-tiny", "resflow-mnist-tiny"])
def test_a_config_without_the_keys_added_later_is_the_same_model(name: str) -> None:
    config = load_config(name)
    saved = config.to_dict()
    for section, key in [
        ("model", "conditional"),
        ("model", "backward_in_forward"),
        ("data", "folder_labels"),
    ]:
        saved[section].pop(key, None)
    check_same_model(saved, config, Path("old.pt"))  # no error
    conditional = load_config(name, {"model.conditional": True})
    with pytest.raises(CheckpointError, match="model.conditional is False there, True here"):
        check_same_model(saved, conditional, Path("old.pt"))
