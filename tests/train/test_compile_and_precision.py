"""torch.compile and low-precision conditioners: where they are supported they agree with eager
float32 (residual flows: compiled log-det series), and where they are not (residual flows in low
precision, or compiling an exact log-det) the run is refused with the reason."""
import json

import pytest
import torch

import invflow
from invflow.models import load_config
from invflow.train.loop import train

SMALL_GLOW = {"model.steps_per_level": 2, "model.hidden_channels": 16, "data.image_size": 16}


def _loss_and_grads(model, forward, x):
    model.zero_grad(set_to_none=True)
    loss = -forward(x)[0].mean()
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]


def test_compiled_glow_agrees_with_eager() -> None:
    try:
        import torch._inductor  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the torch build
        pytest.skip(f"torch.compile unavailable: {err}")
    torch.manual_seed(0)
    model = invflow.build_model(load_config("glow-mnist-tiny", SMALL_GLOW))
    x = 0.05 + 0.9 * torch.rand(8, 1, 16, 16)
    model.log_prob(x)  # ActNorm init, eagerly
    eager_loss, eager_grads = _loss_and_grads(model, model, x)
    compiled_loss, compiled_grads = _loss_and_grads(model, torch.compile(model), x)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-4)
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("preset", ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny", "glow-toy-rings"])
def test_an_initialised_glow_family_model_traces_without_graph_breaks(preset: str) -> None:
    """A graph break in every layer (ActNorm reading its initialised flag as a tensor once did)
    recompiles per layer until dynamo's cache limit, and the compiled step runs eagerly."""
    torch.manual_seed(0)
    model = invflow.build_model(load_config(preset, SMALL_GLOW if "toy" not in preset else {}))
    x = torch.randn(8, 2) if "toy" in preset else 0.05 + 0.9 * torch.rand(8, *model.input_shape)
    model.log_prob(x)  # ActNorm init, eagerly, as the training loop does before compiling
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]


@pytest.mark.parametrize("key, value, message", [
    ("train.compile", True, "exact log-det .* stays eager"), ("train.precision", "bf16", "Lip")])
def test_residual_flows_refuse_low_precision_and_compiling_an_exact_log_det(key: str, value, message: str,
                                                                            tmp_path) -> None:
    config = load_config("resflow-toy-rings", {key: value, "train.steps": 1, "model.logdet": "exact"})
    with pytest.raises(ValueError, match=message):
        train(config, tmp_path, progress=False)


def _train_bits(tmp_path, compiled: bool) -> list[float]:
    config = load_config("resflow-toy-rings", {
        "model.logdet": "unbiased", "model.blocks_per_scale": 2, "model.hidden_channels": 16,
        "train.compile": compiled, "train.steps": 4, "train.log_every": 1, "train.eval_batches": 1,
        "train.tensorboard": False})
    run = tmp_path / ("compiled" if compiled else "eager")
    train(config, run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["bits"] for r in rows if r.get("split") == "train"]


def test_compiled_residual_training_follows_the_eager_run(tmp_path) -> None:
    """``train.compile`` on a residual flow compiles each block's log-det series: the same seed
    gives the same training losses as eager, step by step (float32 rounding apart)."""
    eager, compiled = _train_bits(tmp_path, False), _train_bits(tmp_path, True)
    assert len(eager) == 4
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), atol=1e-4, rtol=0)


def test_bf16_conditioners_keep_logdet_in_float32_and_train(tmp_path) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(load_config("glow-mnist-tiny", SMALL_GLOW))
    assert model.set_conditioner_precision(torch.bfloat16) == 4
    x = 0.05 + 0.9 * torch.rand(4, 1, 16, 16)
    z, logdet = model.flow(x)
    assert z.dtype == logdet.dtype == torch.float32 and torch.isfinite(logdet).all()
    model.set_conditioner_precision(None)
    _, logdet32 = model.flow(x)
    torch.testing.assert_close(logdet, logdet32, rtol=1e-2, atol=1.0)  # bf16 conditioners: close, not equal

    config = load_config(
        "glow-toy-rings",
        {
            "train.precision": "bf16",
            "train.steps": 20,
            "model.steps_per_level": 2,
            "train.eval_batches": 1,
            "train.log_every": 5,
        },
    )
    result = train(config, tmp_path, progress=False)
    assert result.nonfinite == 0 and torch.isfinite(torch.tensor(result.test_value))


def test_training_loop_runs_compiled(tmp_path) -> None:
    config = load_config(
        "glow-toy-rings",
        {"train.compile": True, "train.steps": 3, "model.steps_per_level": 1, "train.eval_batches": 1},
    )
    result = train(config, tmp_path, progress=False)
    assert result.step == 3 and torch.isfinite(torch.tensor(result.test_value))
