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
    assert not [line for line in heads if "DIFFERS" in line]  # every difference has its reason
    verdicts = {line.split()[0]: line.split("]  ", 1)[1] for line in heads if "]  " in line}
    assert verdicts["resflow-toy-checkerboard"] == "departs in blocks (below)"  # 200 blocks in app. D
    for name in APPENDIX_E:  # Adam "with otherwise default hyperparameters": no warm-up, no clipping
        assert verdicts[name].startswith("departs in warm-up, clip (below)")
    for data in ("lsun-church96", "celebahq-64", "celebahq-128", "celebahq-256"):  # Table 3: "—"
        assert verdicts[f"me-woodbury-glow-{data}"].startswith("extrapolated: d_c, d_h, d_w")
    assert verdicts["me-woodbury-glow-cifar10"] == "matches"
    assert "  departs in clip: chosen: gradient norm clipped at 20" in out
    assert "  paper      64  3  8       512" in out  # Table 2's CIFAR-10 row under the preset's
    departures = out.split("Where the code departs from the papers' text:\n")[1]
    assert "2 + tanh(s)/2" in departures and "averaged_model" in departures


# App. D, Fig. 12: preset -> (norm orders, reported bits); 200 blocks, brute-force log-dets.
FIG12 = {"resflow-toy-checkerboard-paper-p2": ("2", 5.13), "resflow-toy-checkerboard-paper-pinf": ("f", 5.09)}


@pytest.mark.parametrize("name", sorted(FIG12))
def test_checkerboard_paper_presets_follow_appendix_d_and_train(name: str, capsys) -> None:
    """200 blocks with exact log-dets and the figure's norm; one training step works (the run
    itself is hours: benchmarks/checkerboard_paper.py)."""
    import torch

    from invflow.models import build_model

    orders, bits = FIG12[name]
    config = load_config(name)
    m = config.model
    assert (m.blocks_per_scale, m.scales, m.logdet, m.norm_orders) == (200, 1, "exact", orders)
    # the rest as the paper's train_toy.py: --dims 128-128-128-128, --coeff 0.9, no ActNorm
    assert (m.hidden_channels, m.mlp_hidden_layers, m.coeff, m.actnorm) == (128, 4, 0.9, False)
    t = config.train
    assert (config.data.batch_size, t.lr, t.weight_decay) == (500, 1e-3, 1e-5)
    assert (t.warmup_steps, t.ema_decay) == (0, 0.0)
    assert t.checkpoint_minutes is not None
    torch.manual_seed(0)
    model = build_model(load_config(name, {"model.blocks_per_scale": 3}))
    loss = -model.log_prob(torch.randn(16, 2)).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert main(["configs", "--paper"]) == 0
    assert f"reported: Fig. 12: {bits} bits on the checkerboard" in capsys.readouterr().out


def test_the_long_checkerboard_preset_is_the_measured_frontier_point() -> None:
    """resflow-toy-checkerboard-long: the configuration that reached 5.08 bits (below Fig. 12's
    5.09) within 10 CPU-minutes on one thread; residual blocks with exact 2D log-dets as in app. D."""
    config = load_config("resflow-toy-checkerboard-long")
    m, t = config.model, config.train
    assert config.family == "resflow"
    assert (m.blocks_per_scale, m.hidden_channels, m.mlp_hidden_layers) == (16, 32, 2)
    assert (m.logdet, m.norm_orders, m.scales) == ("exact", "f", 1)
    assert (t.steps, t.lr, t.lr_schedule, t.threads) == (12000, 0.01, "cosine", 1)
    assert config.data.batch_size == 500
    assert t.eval_batches is None  # the final figure uses all 20,000 held-out points
