"""FlowModel: a flow onto a base distribution, with log_prob, sample and bits/dim
(docs/architecture.md sections 2, 3)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from invflow.core.distributions import StandardNormal
from invflow.core.arguments import check_count, check_fits_in_memory, check_number
from invflow.core.flow import Flow, check_shape, name_layers
from invflow.core.hooks import LowPrecisionConditioner, UpdatesAfterOptimizerStep
from invflow.core.nonfinite import NonFiniteSamples, first_nonfinite_layer, nonfinite_rows
from invflow.core.objectives import ImageBitsPerDim, Objective, VectorBits, nats_to_bits_per_dim
from invflow.data.dequantize import dequantize

SAMPLE_CHUNK = 256  # samples per inverse pass: bounds the activations' memory whatever n is


class FlowModel(nn.Module):
    """``log p(x) = log p_Z(f(x)) + log|det J_f(x)|`` for a flow ``f`` (``self.flow``) and prior ``p_Z``.

    ``input_shape`` is the per-sample shape ``self.flow`` expects: ``(C, H, W)`` for images in
    [0, 1] (dequantized), ``(D,)`` for vectors.

    A model family says what it supports through the hooks below, which have defaults; the
    training loop and evaluation read only these, never the family's name
    (docs/architecture.md, "Adding a model family").
    """

    #: Why ``torch.compile`` cannot train this model; ``None`` when it can.
    compile_unsupported: str | None = None
    #: Why low-precision (bf16/fp16) conditioners cannot train this model; ``None`` when they can.
    low_precision_unsupported: str | None = None
    #: Log-density draws per sample in evaluation (more than 1 for stochastic log-det estimates).
    eval_draws: int = 1
    #: One line saying which log-det evaluation reports.
    estimator: str = "exact log-det"

    def __init__(self, flow: Flow, prior: StandardNormal, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.flow = flow
        self.prior = prior
        self.input_shape = tuple(input_shape)
        name_layers(self)

    @property
    def dims(self) -> int:
        """Number of dimensions D of one sample."""
        return math.prod(self.input_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(log_prob(x), outputs)``: what training differentiates (and what DDP / ``torch.compile``
        wrap). ``outputs`` holds the extra tensors the model's objective needs, none here."""
        return self.log_prob(x), {}

    def make_objective(self, n_bits: int) -> Objective:
        """The objective training minimises: bits/dim of ``n_bits`` images, bits for vectors."""
        return VectorBits() if len(self.input_shape) == 1 else ImageBitsPerDim(n_bits)

    def log_prob(self, x: Tensor) -> Tensor:
        """Per-sample log-density of ``x`` (shape ``(B, *input_shape)``), in nats."""
        check_shape(x, self.input_shape, "FlowModel.log_prob")
        if x.dtype != self.prior.dtype:
            # Integer pixels would otherwise be read as a point far outside [0, 1]: a silent wrong answer.
            integers = not (x.dtype.is_floating_point or x.dtype.is_complex)
            hint = ("use model.bits_per_dim(x_int, n_bits) for integer images" if integers else
                    f"convert the input with x.to({self.prior.dtype}) or the model with model.to({x.dtype})")
            raise ValueError(f"FlowModel.log_prob: expected {self.prior.dtype} input (dequantized images in "
                             f"[0, 1] or vectors), got {x.dtype}; {hint}")
        if x.shape[0] == 0:
            raise ValueError(f"FlowModel.log_prob: empty batch, shape {tuple(x.shape)}")
        z, logdet = self.flow(x)
        return self.prior.log_prob(z) + logdet

    def after_optimizer_step(self) -> None:
        """Hook the training loop calls after each optimizer step: layers holding state derived
        from the weights (e.g. power-iteration vectors) update it in their own
        ``after_optimizer_step``."""
        for module in self.modules():
            if isinstance(module, UpdatesAfterOptimizerStep):
                module.after_optimizer_step()

    def set_conditioner_precision(self, dtype: torch.dtype | None) -> int:
        """Run coupling conditioner networks under autocast in ``dtype`` (bf16/fp16), keeping
        log-dets, invertible maps and the prior in full precision; returns how many were set."""
        layers = [m for m in self.modules() if isinstance(m, LowPrecisionConditioner)]
        for layer in layers:
            layer.autocast_dtype = dtype
        return len(layers)

    def training_stats(self) -> dict[str, float]:
        """Extra numbers for the training log (e.g. log-det estimator variance); none by default."""
        return {}

    def inverse_iteration_counts(self) -> list[int]:
        """Iterations each iteratively inverted layer needed in the last ``sample``/``inverse``;
        empty for models whose inverse is closed-form."""
        return []

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, raw: bool = False, chunk_size: int = SAMPLE_CHUNK) -> Tensor:
        """``n`` samples ``x = f^{-1}(z)``, ``z ~ N(0, temperature^2 I)``, in the space of ``log_prob``.

        Images come back in [0, 1], the space ``log_prob`` and ``bits_per_dim`` read: ``f^{-1}(z)``
        clamped, because a flow puts a little mass outside the data's range (a logit transform's
        inverse reaches ``−α/(1−2α)``, a Glow has no bound at all). ``raw=True`` returns the
        continuous ``f^{-1}(z)`` unclamped; vectors (2D toys) are always returned raw. The inverse
        runs in chunks of ``chunk_size`` samples, so memory beyond the result stays bounded.
        Raises ``NonFiniteSamples`` (count, and the layer that produced them) rather than
        returning NaN or inf.
        """
        n = check_count(n, "n")
        chunk_size = check_count(chunk_size, "chunk_size")
        temperature = check_number(temperature, "temperature", low=0.0)
        check_fits_in_memory(n * self.dims * self.prior.dtype.itemsize, self.prior._anchor.device,
                             f"sample(n={n})")
        z = self.prior.sample(n, temperature)
        x = torch.cat([self.flow.inverse(part) for part in z.split(chunk_size)])
        bad = nonfinite_rows(x)
        if bool(bad.any()):
            raise NonFiniteSamples(int(bad.sum()), n, first_nonfinite_layer(self.flow, z[bad]), temperature, x)
        return x if raw or len(self.input_shape) != 3 else x.clamp(0.0, 1.0)

    def bits_per_dim(self, x_int: Tensor, n_bits: int) -> Tensor:
        """Per-sample bits/dim of integer images, docs/architecture.md section 3.

        ``x = (x_int + u) / K`` with ``u ~ U[0,1)^D``, ``K = 2^n_bits``, and
        ``bpd = (-log p(x) + D log K) / (D ln 2)``.
        """
        x = dequantize(x_int, n_bits, dtype=self.prior.dtype)
        return nats_to_bits_per_dim(self.log_prob(x), self.dims, n_bits)


__all__ = ["FlowModel", "nats_to_bits_per_dim"]
