"""``torch.export`` of models' ``log_prob`` and of their sampling map (the inverse): Glow family
(unconditional and class-conditional) and residual flows, whose fixed-point inverse exports as a
``while_loop`` with the same stopping rule. The exported program computes exactly what the model
does. (An image residual flow's ``log_prob`` does not export: its Russian-roulette series has a
random, data-dependent length; the 2D residual flows' exact log-det does.)"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import invflow

SMALL = {"model__steps_per_level": 1, "model__hidden_channels": 8, "data__image_size": 8}


class LogProb(nn.Module):
    def __init__(self, model: invflow.FlowModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.model.log_prob(x, context)


class Decode(nn.Module):
    """``x = f⁻¹(z; c)``: sampling without the random draw, which stays outside the program."""

    def __init__(self, model: invflow.FlowModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        features = self.model.encode_context(context, z.shape[0], "Decode")
        return (
            self.model.flow.inverse_without_logdet(z, features)
            if features is not None
            else self.model.flow.inverse_without_logdet(z)
        )


@pytest.mark.parametrize("name", ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny", "glow-mnist-cond-tiny"])
def test_exported_log_prob_and_decoder_compute_what_the_model_does(name: str) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(name, **SMALL)
    x = torch.rand(2, *model.input_shape)
    context = torch.tensor([3, 7]) if model.context_spec is not None else None
    model.log_prob(x, context)  # ActNorm init
    model.eval()
    args = (x,) if context is None else (x, context)
    exported = torch.export.export(LogProb(model), args)
    torch.testing.assert_close(exported.module()(*args), model.log_prob(x, context), atol=0, rtol=0)
    z = torch.randn(2, model.dims)
    args = (z,) if context is None else (z, context)
    decoder = Decode(model)
    torch.testing.assert_close(
        torch.export.export(decoder, args).module()(*args), decoder(*args), atol=0, rtol=0
    )


def test_onnx_export_of_a_glow_log_prob_runs_in_onnxruntime(tmp_path) -> None:
    """ONNX through torch's default (dynamo) exporter, checked by running the file in onnxruntime.
    (Woodbury layers do not convert: ONNX has no operator for their ``slogdet``.)"""
    import onnxruntime

    torch.manual_seed(0)
    model = invflow.build_model("glow-mnist-tiny", **SMALL)
    x = torch.rand(2, *model.input_shape)
    model.log_prob(x)
    model.eval()
    path = tmp_path / "log_prob.onnx"
    torch.onnx.export(LogProb(model).eval(), (x,), str(path))
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model.log_prob(x).detach(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "overrides", "log_prob"),
    [
        ("resflow-toy-8gaussians", {"model__blocks_per_scale": 2, "model__hidden_channels": 8}, True),
        (
            "resflow-mnist-tiny",
            {"model__blocks_per_scale": 1, "model__hidden_channels": 8, "data__image_size": 8},
            False,
        ),
    ],
)
def test_residual_flows_export_their_decoder_and_the_2d_exact_log_prob(
    name: str, overrides: dict, log_prob: bool
) -> None:
    torch.manual_seed(0)
    model = invflow.build_model(name, **overrides)
    x = torch.rand(4, *model.input_shape) if len(model.input_shape) == 3 else torch.randn(4, 2)
    model.log_prob(x)
    model.eval()
    if log_prob:
        exported = torch.export.export(LogProb(model).eval(), (x,))
        torch.testing.assert_close(exported.module()(x), model.log_prob(x), atol=0, rtol=0)
    z = torch.randn(4, model.dims)
    decoder = Decode(model).eval()
    decoded = torch.export.export(decoder, (z,)).module()(z)
    torch.testing.assert_close(decoded, decoder(z), atol=0, rtol=0)
    encoded, _ = model.flow(decoded)  # the exported loop stops where the eager one does: a true inverse
    torch.testing.assert_close(encoded, z, atol=1e-4, rtol=0)
