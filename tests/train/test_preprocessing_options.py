"""``data.flip`` and ``data.crop`` (Chen et al. 2019, app. E "Preprocessing") on a tiny batch, and
the migration of the old ``data.augment`` switch."""
from __future__ import annotations

import pytest
import torch

from invflow.config import DataConfig
from invflow.models import config_from_dict, load_config
from invflow.train.batches import ImageBatches, ToyBatches
from invflow.train.run_dir import comparable

N, H, W = 64, 6, 6


def _images() -> torch.Tensor:
    """Distinct images whose rows and columns are all different (every flip/shift is visible)."""
    base = torch.arange(H * W, dtype=torch.uint8).reshape(1, 1, H, W)
    return (
        (base + torch.arange(N, dtype=torch.uint8).reshape(N, 1, 1, 1) * 40).expand(N, 2, H, W).contiguous()
    )


def _batch(flip: bool, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the augmented source and the same images without preprocessing."""
    images = _images()
    labels = torch.arange(N)
    data = DataConfig(dataset="cifar10", batch_size=N, flip=flip, crop=crop)
    plain = ImageBatches(images, labels, DataConfig(dataset="cifar10", batch_size=N), seed=3).batch(0)
    out = ImageBatches(images, labels, data, seed=3).batch(0)
    assert torch.equal(out.y, plain.y)
    return out.x, plain.x


def _is_window_of_reflect_padding(out: torch.Tensor, x: torch.Tensor, pad: int) -> bool:
    padded = torch.nn.functional.pad(x.float()[None], (pad, pad, pad, pad), mode="reflect")[0]
    return any(torch.equal(out.float(), padded[:, i:i + H, j:j + W])
               for i in range(2 * pad + 1) for j in range(2 * pad + 1))


def test_no_preprocessing_returns_the_images_unchanged() -> None:
    out, plain = _batch(False, 0)
    assert torch.equal(out, plain)


def test_flip_only_flips() -> None:
    out, plain = _batch(True, 0)
    flipped = [torch.equal(o, p.flip(-1)) for o, p in zip(out, plain)]
    same = [torch.equal(o, p) for o, p in zip(out, plain)]
    assert all(f or s for f, s in zip(flipped, same))  # nothing but a horizontal flip happens
    assert 10 < sum(flipped) < N - 10  # about half are flipped


def test_crop_only_crops() -> None:
    out, plain = _batch(False, 2)
    for o, p in zip(out, plain):
        assert _is_window_of_reflect_padding(o, p, 2)
        assert not _is_window_of_reflect_padding(o.flip(-1), p, 2) or torch.equal(o, p)
    assert sum(not torch.equal(o, p) for o, p in zip(out, plain)) > N // 2  # most are shifted


def test_flip_and_crop_together() -> None:
    out, plain = _batch(True, 2)
    for o, p in zip(out, plain):
        assert _is_window_of_reflect_padding(o, p, 2) or _is_window_of_reflect_padding(o.flip(-1), p, 2)


def test_crop_must_be_smaller_than_the_image() -> None:
    with pytest.raises(ValueError, match="data.crop=6"):
        ImageBatches(_images(), torch.arange(N), DataConfig(dataset="cifar10", batch_size=N, crop=6), seed=0)
    with pytest.raises(ValueError, match="data.crop must be >= 0"):
        load_config("resflow-cifar10", {"data.crop": -1})


def test_toy_data_refuses_image_preprocessing() -> None:
    with pytest.raises(ValueError, match="apply to images"):
        ToyBatches(DataConfig(dataset="checkerboard", flip=True), seed=0)


@pytest.mark.parametrize(("dataset", "flip"), [("cifar10", True), ("mnist", False), ("svhn", False)])
def test_legacy_augment_reads_as_what_it_did(dataset: str, flip: bool) -> None:
    raw = load_config("glow-mnist-tiny").to_dict()
    raw["data"] = {k: v for k, v in raw["data"].items() if k not in ("flip", "crop")}
    raw["data"].update(dataset=dataset, augment=True)
    with pytest.warns(DeprecationWarning, match="data.flip and data.crop"):
        config = config_from_dict(raw)
    assert (config.data.crop, config.data.flip) == (4, flip)
    with pytest.warns(DeprecationWarning):
        assert comparable(raw)["data"] == comparable(config.to_dict())["data"]
    raw["data"]["flip"] = True
    with pytest.raises(ValueError, match="give only the new keys"):
        config_from_dict(raw)
