"""Residual Flow models: exact model log-density vs brute force, inversion, training on MNIST,
the 2D checkerboard study, and the hybrid classifier."""
import pytest
import torch

import invflow
from harness import jacobian_logdet
from invflow import run_files
from invflow.cli import main
from invflow.train.loop import train
from invflow.train.metrics import read_metrics

EXACT_TINY = {
    "data.image_size": 4,
    "model.scales": 2,
    "model.blocks_per_scale": 1,
    "model.hidden_channels": 8,
    "model.logdet": "exact",
    "model.gradient": "backprop",
}


@pytest.mark.parametrize("factor_out", [False, True])
def test_exact_model_log_prob_equals_brute_force_jacobian(factor_out: bool) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(
        invflow.load_config("resflow-mnist-tiny", {**EXACT_TINY, "model.factor_out": factor_out})
    )
    model = model.double()
    x = 0.05 + 0.9 * torch.rand(3, 1, 4, 4, dtype=torch.float64)
    model.log_prob(x)  # ActNorm data-dependent init
    z, _ = model.flow(x)
    expected = model.prior.log_prob(z) + jacobian_logdet(lambda v: model.flow(v)[0], x)
    torch.testing.assert_close(model.log_prob(x), expected, atol=1e-8, rtol=0)


def test_image_model_inverts_within_1e5() -> None:
    torch.manual_seed(0)
    config = invflow.load_config("resflow-cifar10-tiny", {"data.image_size": 16})
    model = invflow.build_model(config).eval()
    x = 0.05 + 0.9 * torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        model.log_prob(x)
        z, _ = model.flow(x)
        assert (model.flow.inverse(z)[0] - x).abs().max() < 1e-5


FAST = {
    "model.blocks_per_scale": 1,
    "model.hidden_channels": 16,
    "train.steps": 30,
    "train.log_every": 5,
    "train.eval_batches": 2,
    "train.eval_every": 1000,
    "train.sample_every": 1000,
    "train.checkpoint_every": 30,
    "train.warmup_steps": 5,
    "train.n_samples_grid": 4,
    "train.ema_decay": 0.9,
}


def test_resflow_mnist_tiny_learns_evaluates_with_stderr_and_samples(mnist_dir, tmp_path, capsys) -> None:
    config = invflow.load_config("resflow-mnist-tiny", {**FAST, "data.data_dir": str(mnist_dir)})
    result = train(config, tmp_path / "run", progress=False)
    bpd = [
        r["bpd"]
        for r in read_metrics(tmp_path / "run" / run_files.METRICS)
        if r["split"] == "train" and "bpd" in r
    ]
    assert sum(bpd[-2:]) / 2 < sum(bpd[:2]) / 2 - 0.05, bpd
    assert result.test_stderr > 0
    test = [r for r in read_metrics(tmp_path / "run" / run_files.METRICS) if r["split"] == "test"][-1]
    assert test["bpd_estimator_stderr"] > 0

    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "estimator standard error" in out and "unbiased Russian-roulette log-det" in out
    assert main(["sample", str(tmp_path / "run"), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "s.png").stat().st_size > 0 and "fixed-point iterations" in out


@pytest.mark.parametrize("orders", ["2", "f"])
def test_checkerboard_study_runs_with_p2_and_pinf(orders: str, tmp_path) -> None:
    config = invflow.load_config("resflow-toy-checkerboard", {
        "model.norm_orders": orders, "model.blocks_per_scale": 2, "train.steps": 10, "data.batch_size": 64,
        "train.eval_batches": 1, "train.log_every": 5})
    result = train(config, tmp_path, progress=False)
    assert result.metric == "bits" and torch.isfinite(torch.tensor(result.test_value))
    assert (tmp_path / run_files.SAMPLES / "final.png").stat().st_size > 0


def test_checkerboard_config_allows_200_blocks() -> None:
    config = invflow.load_config("resflow-toy-checkerboard", {"model.blocks_per_scale": 200})
    model = invflow.build_model(config)
    assert len(model.blocks()) == 200


def test_learned_norm_orders_are_logged(tmp_path) -> None:
    config = invflow.load_config("resflow-toy-rings", {
        "model.learn_norm_orders": True, "model.blocks_per_scale": 1, "train.steps": 4, "train.log_every": 2,
        "train.eval_batches": 1, "data.batch_size": 32})
    train(config, tmp_path, progress=False)
    logged = [r for r in read_metrics(tmp_path / run_files.METRICS) if r["split"] == "train"][-1]
    orders = [v for k, v in logged.items() if k.startswith("norm_order/")]
    assert orders and all(1.5 < p < 2.5 for p in orders)


@pytest.mark.parametrize(("mode", "per_block"), [(True, 4), ("per-state", 4), ("shared", 1), (False, 0)])
def test_learned_norm_orders_shared_or_per_state(mode, per_block: int) -> None:
    """Chen et al. 2019, app. D: all orders free (per-state; the block's output reuses its input's
    order) or one order shared by every state of a block. 2 blocks of 4 linear maps (5 states)."""
    from invflow.residual.lipschitz import LearnedNormOrder, SpectralNormLinear

    model = invflow.build_model(invflow.load_config("resflow-toy-rings", {
        "model.learn_norm_orders": mode, "model.blocks_per_scale": 2, "model.hidden_channels": 8}))
    for block in model.blocks():
        orders = {id(m) for m in block.modules() if isinstance(m, LearnedNormOrder)}
        assert len(orders) == per_block
        linears = [m for m in block.modules() if isinstance(m, SpectralNormLinear)]
        if per_block:
            assert linears[0].domain is linears[-1].codomain  # Lip(g) < 1 in one norm
        if per_block == 1:
            assert all(m.domain is linears[0].domain and m.codomain is linears[0].domain for m in linears)
    if per_block:
        x = torch.randn(16, 2)
        model.log_prob(x).mean().backward()
        learned = [m.s for m in model.modules() if isinstance(m, LearnedNormOrder)]
        assert all(s.grad is not None and torch.isfinite(s.grad) for s in learned)


def test_shared_learned_order_needs_one_initial_order() -> None:
    with pytest.raises(ValueError, match="one initial order"):
        invflow.load_config(
            "resflow-toy-rings", {"model.learn_norm_orders": "shared", "model.norm_orders": "2332"}
        )
    with pytest.raises(ValueError, match="learn_norm_orders"):
        invflow.load_config("resflow-toy-rings", {"model.learn_norm_orders": "everywhere"})


def test_hybrid_accuracy_rises_above_chance(mnist_dir, tmp_path) -> None:
    config = invflow.load_config(
        "resflow-hybrid-mnist-tiny",
        {
            **FAST,
            "train.steps": 60,
            "train.eval_batches": 4,
            "data.data_dir": str(mnist_dir),
            "train.lr": 2e-3,
        },
    )
    train(config, tmp_path, progress=False)
    test = [r for r in read_metrics(tmp_path / run_files.METRICS) if r["split"] == "test"][-1]
    assert test["accuracy"] > 0.3 and test["bpd"] > 0


def test_hybrid_lambda_zero_is_a_pure_classifier() -> None:
    model = invflow.build_model("resflow-hybrid-mnist-tiny", model__hybrid_weight=0.0, data__image_size=8,
                                model__blocks_per_scale=1, model__hidden_channels=8)
    assert model.hybrid_weight == 0.0
    default = invflow.build_model("resflow-hybrid-mnist-tiny", data__image_size=8, model__blocks_per_scale=1,
                                  model__hidden_channels=8)
    assert default.hybrid_weight == pytest.approx(1 / 64)
