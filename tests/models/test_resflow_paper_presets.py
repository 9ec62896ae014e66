"""The Residual Flows presets against Chen et al. 2019, appendix E (this test's own copy, written
from ../shared/seeds/000_*.txt), and ``invflow configs --paper`` showing every paper preset."""
from __future__ import annotations

import pytest

from invflow.cli import main
from invflow.models import load_config

# App. E: preset -> (scales, blocks per scale, squeeze first, logit alpha or "mean/std", flip, crop, n_bits)
APPENDIX_E = {
    "resflow-mnist": (3, 16, False, 1e-5, False, 0, 8),  # MNIST, alpha 1e-5
    "resflow-cifar10": (3, 16, False, 0.05, True, 0, 8),  # flips for CIFAR-10
    "resflow-imagenet32": (3, 32, False, 0.05, False, 0, 8),
    "resflow-imagenet64": (3, 32, True, 0.05, False, 0, 8),  # Image -> Squeeze -> Logit -> ...
    "resflow-celeba64": (4, 16, True, 0.05, True, 0, 5),  # flips for CelebA; 5-bit (Fig. 10)
    "resflow-hybrid-mnist": (3, 16, False, 1e-5, False, 0, 8),  # "same as density modeling", no crops
    "resflow-hybrid-cifar10": (
        3,
        16,
        False,
        "mean/std",
        True,
        4,
        8,
    ),  # crops after 4-pixel reflection padding
}


@pytest.mark.parametrize("name", sorted(APPENDIX_E))
def test_resflow_presets_follow_appendix_e(name: str) -> None:
    scales, blocks, first, alpha, flip, crop, bits = APPENDIX_E[name]
    config = load_config(name)
    m, d, t = config.model, config.data, config.train
    assert (m.scales, m.blocks_per_scale, m.squeeze_first, m.hidden_channels, m.actnorm) == (
        scales,
        blocks,
        first,
        512,
        True,
    )
    assert m.logit_alpha == (None if alpha == "mean/std" else alpha)
    assert (d.flip, d.crop, d.n_bits) == (flip, crop, bits)
    assert (t.lr, t.ema_decay, t.ema_schedule) == (0.001, 0.999, "constant")  # Adam 1e-3, Polyak 0.999


def test_hybrid_svhn_crops_and_keeps_a_logit_transform() -> None:
    """SVHN: crops, no flips; "the same architecture as density modeling" (a logit transform)."""
    config = load_config("resflow-hybrid-svhn")
    assert (config.data.crop, config.data.flip) == (4, False) and config.model.logit_alpha is not None


def test_configs_paper_lists_every_paper_preset_beside_its_row(capsys) -> None:
    assert main(["configs", "--paper"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    names = [line.split()[0] for line in heads]
    assert "woodbury-glow-cifar10" in names and "resflow-celeba64" in names and "glow-mnist" not in names
    assert not any(n.endswith("-tiny") for n in names)
    differing = [line for line in heads if "DIFFERS" in line]
    assert [line.split()[0] for line in differing] == ["resflow-toy-checkerboard"]  # 200 blocks in app. D
    assert "  paper      64  3  8       512" in out  # Table 2's CIFAR-10 row under the preset's
