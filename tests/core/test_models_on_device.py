"""Every family on the test device (tests/devices.py: the CPU in CI, CUDA in benchmarks/gpu_check.py):
sampling and scoring stay on the device and agree with the CPU, ``rsample_and_log_prob`` is
differentiable there, a model saved from the device loads back exactly, and tiny presets train,
checkpoint and resume through the real training loop with ``train.device``."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

import invflow
from core.test_sampling_contract import FAMILIES, tiny
from image_folders import random_image_folder
from invflow.models import load_config
from invflow.train import loop

pytestmark = pytest.mark.device

RESIDUAL = ("resflow",)  # families whose log-det is a stochastic estimate in training and eval


def _images_or_points(model, n: int, generator: torch.Generator) -> torch.Tensor:
    if len(model.input_shape) == 3:
        return torch.rand(n, *model.input_shape, generator=generator)
    return torch.randn(n, *model.input_shape, generator=generator)


@pytest.fixture
def no_tf32():
    """CUDA convolutions default to TF32 (10-bit mantissa): off, so that a device/CPU difference
    is a bug and not TF32's rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_samples_and_scores_on_the_device_as_on_the_cpu(
    name: str, device: torch.device, no_tf32: None
) -> None:
    cpu_model = tiny(name)
    model = copy.deepcopy(cpu_model).to(device)
    torch.manual_seed(1)
    x = model.sample(6)
    assert x.device.type == device.type and x.shape == (6, *model.input_shape)
    with torch.no_grad():
        log_prob = model.log_prob(x)
    assert log_prob.device.type == device.type and bool(torch.isfinite(log_prob).all())
    points = _images_or_points(cpu_model, 5, torch.Generator().manual_seed(2))
    with torch.no_grad():
        z_cpu, logdet_cpu = cpu_model.flow(points)
        z_dev, logdet_dev = model.flow(points.to(device))
    # float32 on two devices: the same function up to rounding of a few dozen layers
    torch.testing.assert_close(z_dev.cpu(), z_cpu, atol=1e-3, rtol=1e-3)
    if not name.startswith(RESIDUAL):
        torch.testing.assert_close(logdet_dev.cpu(), logdet_cpu, atol=1e-2, rtol=1e-4)


def test_residual_sampling_converges_on_the_device(device: torch.device) -> None:
    """The fixed-point inverse reaches its float32 bound (CUDA's default TF32 convolutions once
    stalled it above the bound, to the 1000-iteration limit), and leaves the TF32 settings as
    they were."""
    model = tiny("resflow-mnist-tiny").to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(6)).to(p.device))
    model.after_optimizer_step()  # renormalise: Lip(g) < 1 again
    settings = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        torch.manual_seed(7)
        x = model.sample(8)
    counts = model.inverse_iteration_counts()
    assert x.device.type == device.type and counts and max(counts) < 200, counts
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == settings


@pytest.mark.parametrize("name", ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny", "spline-cifar10-tiny"])
def test_a_glow_family_training_step_never_waits_for_the_device(name: str, device: torch.device) -> None:
    """Loss, backward, Adam step and after-step hooks queue work without a host-device
    synchronisation (on CUDA, ``torch.cuda.set_sync_debug_mode('error')`` raises at the first)."""
    from invflow.compare.measure import synthetic_batch, training_step

    model = tiny(name).to(device).train()
    config = model.config
    batch = synthetic_batch(config, model.input_shape, device, torch.Generator().manual_seed(8))
    step = training_step(model, config, batch)
    step()  # the optimizer's state is created in the first step
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            step()
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize("name", ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny", "resflow-toy-rings"])
def test_rsample_and_log_prob_is_differentiable_on_the_device(name: str, device: torch.device) -> None:
    model = tiny(name).to(device)
    torch.manual_seed(3)
    x, log_prob = model.rsample_and_log_prob(4)
    assert x.device.type == log_prob.device.type == device.type
    (x.square().mean() + log_prob.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("name", ["glow-mnist-tiny", "macow-cifar10-tiny", "resflow-mnist-tiny",
                                  "glow-toy-rings"])
def test_a_model_saved_from_the_device_loads_back_exactly(
    name: str, device: torch.device, tmp_path: Path
) -> None:
    model = tiny(name).to(device)
    path = invflow.save(model, tmp_path / "model.safetensors")
    loaded = invflow.load(path).to(device).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = _images_or_points(model, 3, torch.Generator().manual_seed(4)).to(device)
    with torch.no_grad():
        torch.manual_seed(5)
        expected = model.log_prob(x)
        torch.manual_seed(5)
        torch.testing.assert_close(loaded.log_prob(x), expected, atol=0, rtol=0)


SMALL_RUN = {"data.batch_size": 8, "train.eval_batches": 1, "train.n_samples_grid": 4,
             "train.eval_every": 2, "train.sample_every": 2, "train.checkpoint_every": 2,
             "train.log_every": 1, "model.hidden_channels": 8}
IMAGE_RUN = {"data.dataset": "folder", "data.image_size": 8, "data.folder_test_images": 8}
PRESETS = {
    "glow-toy-rings": {"data.toy_samples": 64},
    "resflow-toy-rings": {"data.toy_samples": 64, "model.blocks_per_scale": 2},
    "glow-mnist-tiny": {**IMAGE_RUN, "model.levels": 2, "model.steps_per_level": 1},
    "woodbury-glow-cifar10-tiny": {**IMAGE_RUN, "model.levels": 2, "model.steps_per_level": 1},
    "resflow-mnist-tiny": {**IMAGE_RUN, "model.blocks_per_scale": 1},
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_tiny_presets_train_checkpoint_and_resume_on_the_device(
    name: str, device: torch.device, tmp_path: Path
) -> None:
    overrides = {**SMALL_RUN, **PRESETS[name], "train.steps": 4, "train.device": device.type}
    if overrides.get("data.dataset") == "folder":
        overrides["data.data_dir"] = str(random_image_folder(tmp_path / "images", 32))
    first = loop.train(load_config(name, overrides), tmp_path / "run", progress=False)
    assert first.step == 4 and first.nonfinite == 0
    resumed = loop.train(load_config(name, {**overrides, "train.steps": 6}), tmp_path / "run", resume=True,
                         progress=False)
    assert resumed.step == 6 and resumed.nonfinite == 0
    assert all(map(lambda v: v == v, (resumed.train_value, resumed.test_value)))  # not NaN
    model, _ = invflow.load_checkpoint(tmp_path / "run")
    with torch.no_grad():
        assert bool(torch.isfinite(model.to(device).sample(2)).all())
