"""FlowModel: a flow onto a base distribution, with log_prob, sample and bits/dim
(docs/architecture.md sections 2, 3)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from invflow.config import Config
from invflow.core.arguments import check_count, check_fits_in_memory, check_number
from invflow.core.context import ContextSpec
from invflow.core.flow import (
    Flow,
    check_shape,
    first_nondifferentiable_inverse,
    forward_of,
    inverse_of,
    inverse_without_logdet_of,
    name_layers,
)
from invflow.core.hooks import LowPrecisionConditioner, refresh_weight_derived_state
from invflow.core.nonfinite import NonFiniteSamples, first_nonfinite_layer, nonfinite_rows
from invflow.core.objectives import ImageBitsPerDim, Objective, VectorBits, nats_to_bits_per_dim
from invflow.data.batch import Batch
from invflow.data.dequantize import dequantize

SAMPLE_CHUNK = 256  # samples per inverse pass: bounds the activations' memory whatever n is


class Prior(Protocol):
    """What ``FlowModel`` needs of its base distribution (``StandardNormal`` is one; any module with
    these two methods will do, e.g. a Student-t): ``log_prob(z)`` per sample ``(B,)`` of what the
    flow returns, and ``sample(n, temperature)`` of ``n`` latents on the model's device and dtype."""

    def log_prob(self, z: Tensor) -> Tensor: ...

    def sample(self, n: int, temperature: float = 1.0) -> Tensor: ...


class FlowModel(nn.Module):
    """``log p(x | c) = log p_Z(f(x; c)) + log|det J_f(x; c)|`` for a flow ``f`` (``self.flow``) and
    prior ``p_Z``; the context ``c`` only for a conditional model (``context`` given).

    ``input_shape`` is the per-sample shape ``self.flow`` expects: ``(C, H, W)`` for images in
    [0, 1] (dequantized), ``(D,)`` for vectors. ``context`` (a ``ContextSpec``) makes the model
    conditional on class labels ``(B,)`` or vectors ``(B, context_dim)``: every method then needs a
    context, checked and encoded here once (one-hot rows for labels) before the layers read it; an
    unconditional model refuses one. Each of these refusals is a one-line ``ValueError``.

    A model family says what it supports through the hooks below, which have defaults; the
    training loop and evaluation read only these, never the family's name
    (docs/architecture.md, "Adding a model family").

    As a distribution it follows ``torch.distributions``: ``log_prob(x)``, ``sample(sample_shape)``,
    ``rsample`` (where ``has_rsample``: every layer's inverse is differentiable), plus
    ``sample_and_log_prob`` and ``rsample_and_log_prob`` (one pass). Where it differs: a residual
    flow's ``log_prob`` is a stochastic unbiased estimate (Russian-roulette log-det, fresh
    randomness each call, and ``model.train()``/``model.eval()`` choose the estimator);
    ``sample`` takes a ``temperature`` and clamps images to [0, 1].

    >>> import torch
    >>> from invflow import ActNorm, FlowModel, SequentialFlow, StandardNormal
    >>> model = FlowModel(SequentialFlow(ActNorm(2, vector=True)), StandardNormal((2,)), input_shape=(2,))
    >>> model.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
    >>> x, log_p = model.sample_and_log_prob(4)
    >>> torch.allclose(log_p, model.log_prob(x))
    True
    """

    #: Why ``torch.compile`` cannot train this model; ``None`` when it can.
    compile_unsupported: str | None = None
    #: Why low-precision (bf16/fp16) conditioners cannot train this model; ``None`` when they can.
    low_precision_unsupported: str | None = None
    #: Log-density draws per sample in evaluation (more than 1 for stochastic log-det estimates).
    eval_draws: int = 1
    #: One line saying which log-det evaluation reports.
    estimator: str = "exact log-det"
    #: The config ``build_model`` built this model from (``None`` for a model assembled by hand).
    config: Config | None = None

    def __init__(self, flow: Flow, prior: Prior, input_shape: tuple[int, ...],
                 context: ContextSpec | None = None) -> None:
        super().__init__()
        self.flow = flow
        self.prior = prior
        self.input_shape = tuple(input_shape)
        self.context_spec = context
        # follows .to() / .double(): the device and dtype of inputs and samples, whatever the prior
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        name_layers(self)

    @property
    def dims(self) -> int:
        """Number of dimensions D of one sample."""
        return math.prod(self.input_shape)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the model computes in (follows ``.double()`` / ``.to()``)."""
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def encode_context(self, context: object, batch: int | None, where: str,
                       broadcast: bool = False) -> Tensor | None:
        """The floating context the layers read, or ``None`` for an unconditional model; a one-line
        ``ValueError`` when ``context`` does not fit (``ContextSpec.encode``)."""
        if self.context_spec is None:
            if context is not None:
                number = isinstance(context, (int, float))
                hint = ("; a sampling temperature is the keyword temperature=" if number
                        else "; build a conditional model to use contexts")
                raise ValueError(f"{where}: this model is unconditional and takes no context "
                                 f"(got {type(context).__name__}){hint}")
            return None
        encoded = self.context_spec.encode(context, batch, where, self.dtype, broadcast=broadcast)
        return encoded.to(self.device)

    def batch_context(self, batch: Batch) -> Tensor | None:
        """The context of a training or evaluation batch: its labels (or context vectors) for a
        conditional model, ``None`` otherwise."""
        return batch.y if self.context_spec is not None else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``(log_prob(x, context), outputs)``: what training differentiates (and what DDP /
        ``torch.compile`` wrap). ``outputs`` holds the extra tensors the model's objective needs,
        none here."""
        return self.log_prob(x, context), {}

    def make_objective(self, n_bits: int) -> Objective:
        """The objective training minimises: bits/dim of ``n_bits`` images, bits for vectors."""
        return VectorBits() if len(self.input_shape) == 1 else ImageBitsPerDim(n_bits)

    def log_prob(self, x: Tensor, context: Tensor | None = None, draws: int = 1) -> Tensor:
        """Per-sample log-density ``log p(x | context)`` of ``x`` (shape ``(B, *input_shape)``), in
        nats; for residual flows an unbiased stochastic estimate (see the class docstring), averaged
        over ``draws`` independent draws (``log_prob_and_stderr`` also gives its standard error)."""
        draws = check_count(draws, "draws")
        if draws > 1:
            return self.log_prob_and_stderr(x, context, draws)[0]
        check_shape(x, self.input_shape, "FlowModel.log_prob")
        if x.dtype != self.dtype:
            # Integer pixels would otherwise be read as a point far outside [0, 1]: a silent wrong answer.
            integers = not (x.dtype.is_floating_point or x.dtype.is_complex)
            hint = ("use model.bits_per_dim(x_int, n_bits) for integer images" if integers else
                    f"convert the input with x.to({self.dtype}) or the model with model.to({x.dtype})")
            raise ValueError(f"FlowModel.log_prob: expected {self.dtype} input (dequantized images in "
                             f"[0, 1] or vectors), got {x.dtype}; {hint}")
        if x.shape[0] == 0:
            raise ValueError(f"FlowModel.log_prob: empty batch, shape {tuple(x.shape)}")
        encoded = self.encode_context(context, x.shape[0], "FlowModel.log_prob")
        z, logdet = forward_of(self.flow, x, encoded)
        return self.prior.log_prob(z) + logdet

    def log_prob_and_stderr(self, x: Tensor, context: Tensor | None = None, draws: int = 8
                            ) -> tuple[Tensor, Tensor]:
        """``(mean, standard error)`` per sample of ``draws`` >= 2 independent ``log_prob`` draws: the
        estimate and its Monte Carlo error for a stochastic log-det (residual flows with
        ``logdet="unbiased"``; eval mode uses the eval estimator); the error is 0 for exact models."""
        draws = check_count(draws, "draws")
        if draws < 2:
            raise ValueError(f"log_prob_and_stderr needs draws >= 2 for a standard error, got {draws}")
        values = torch.stack([self.log_prob(x, context) for _ in range(draws)])
        return values.mean(dim=0), values.std(dim=0) / math.sqrt(draws)

    def after_optimizer_step(self) -> None:
        """Hook the training loop calls after each optimizer step: layers holding state derived
        from the weights (e.g. power-iteration vectors) update it in their own
        ``after_optimizer_step``."""
        refresh_weight_derived_state(self)

    def compile_for_training(self, net: nn.Module) -> Callable[..., tuple[Tensor, dict[str, Tensor]]]:
        """What the training loop calls with ``train.compile``: ``net`` (this model or its
        DistributedDataParallel wrapper) through ``torch.compile``. A family whose forward cannot
        be traced whole compiles its own parts here instead and returns ``net``."""
        return torch.compile(net)

    def set_conditioner_precision(self, dtype: torch.dtype | None) -> int:
        """Run coupling conditioner networks under autocast in ``dtype`` (bf16/fp16), keeping
        log-dets, invertible maps and the prior in full precision; returns how many were set.
        A model whose ``low_precision_unsupported`` says why it cannot (residual flows) refuses."""
        if dtype is not None and self.low_precision_unsupported is not None:
            raise ValueError(f"{type(self).__name__}.set_conditioner_precision({dtype}): "
                             f"{self.low_precision_unsupported}")
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

    @property
    def has_rsample(self) -> bool:
        """Whether ``rsample`` can differentiate through the inverse (as in ``torch.distributions``):
        decided by the layers, each stating whether its inverse is differentiable."""
        return first_nondifferentiable_inverse(self.flow) is None

    def _check_rsample(self, where: str) -> None:
        layer = first_nondifferentiable_inverse(self.flow)
        if layer is not None:
            raise NotImplementedError(
                f"{type(self).__name__}.{where}: the inverse of {layer.describe()} is not differentiable, "
                "so samples would carry no gradient through it; use sample()")

    def _sample_count(self, sample_shape: int | Sequence[int]) -> tuple[int, tuple[int, ...], str]:
        """``(n, shape, what)``: an ``int`` n is ``(n,)`` (the original form); a tuple / ``torch.Size``
        is torch.distributions' ``sample_shape``, ``()`` one sample without a batch dimension."""
        if isinstance(sample_shape, (tuple, list, torch.Size)):
            shape = tuple(check_count(v, "every entry of sample_shape") for v in sample_shape)
            return math.prod(shape), shape, f"sample({shape})"
        n = check_count(sample_shape, "n")
        return n, (n,), f"sample(n={n})"

    def _generate(
        self, sample_shape: int | Sequence[int], context: object, temperature: float, chunk_size: int,
        with_logdet: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None, tuple[int, ...]]:
        """``(x, z, log|det ∂x/∂z| or None, sample_shape)`` for ``z ~ N(0, T² I)``, ``x = f^{-1}(z; c)``
        computed in chunks; non-finite samples raise ``NonFiniteSamples``. ``context`` has one
        entry per sample (flattened ``sample_shape``) or is one context for all."""
        n, shape, what = self._sample_count(sample_shape)
        chunk_size = check_count(chunk_size, "chunk_size")
        temperature = check_number(temperature, "temperature", low=0.0)
        encoded = self.encode_context(context, n, f"FlowModel.{what}", broadcast=True)
        check_fits_in_memory(n * self.dims * self.dtype.itemsize, self.device, what)
        z = self.prior.sample(n, temperature)
        parts = z.split(chunk_size)
        contexts = [None] * len(parts) if encoded is None else encoded.split(chunk_size)
        if with_logdet:
            xs, logdets = zip(*(inverse_of(self.flow, part, c) for part, c in zip(parts, contexts)))
            x, logdet = torch.cat(xs), torch.cat(logdets)
        else:
            x = torch.cat([inverse_without_logdet_of(self.flow, part, c) for part, c in zip(parts, contexts)])
            logdet = None
        bad = nonfinite_rows(x)
        if bool(bad.any()):
            with torch.no_grad():
                layer = first_nonfinite_layer(self.flow, z[bad], None if encoded is None else encoded[bad])
            raise NonFiniteSamples(int(bad.sum()), n, layer, temperature, x.detach())
        return x, z, logdet, shape

    def _finish(self, x: Tensor, shape: tuple[int, ...], raw: bool) -> Tensor:
        x = x if raw or len(self.input_shape) != 3 else x.clamp(0.0, 1.0)
        return x.reshape(*shape, *self.input_shape)

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None,
               temperature: float = 1.0, raw: bool = False, chunk_size: int = SAMPLE_CHUNK) -> Tensor:
        """Samples ``x = f^{-1}(z; c)``, ``z ~ N(0, temperature^2 I)``, in the space of ``log_prob``.

        ``sample(n)`` gives ``(n, *input_shape)``; a tuple ``sample_shape`` gives
        ``(*sample_shape, *input_shape)`` as in ``torch.distributions`` (``sample()`` is one sample).
        A conditional model takes ``context`` with one entry per sample (in the flattened
        ``sample_shape``'s order) or a single one for all (a 0-dim label, one vector).
        Images come back in [0, 1], the space ``log_prob`` and ``bits_per_dim`` read: ``f^{-1}(z)``
        clamped, because a flow puts a little mass outside the data's range (a logit transform's
        inverse reaches ``−α/(1−2α)``, a Glow has no bound at all). ``raw=True`` returns the
        continuous ``f^{-1}(z)`` unclamped; vectors (2D toys) are always returned raw. The inverse
        runs in chunks of ``chunk_size`` samples, so memory beyond the result stays bounded.
        Raises ``NonFiniteSamples`` (count, and the layer that produced them) rather than
        returning NaN or inf.

        >>> import torch
        >>> from invflow import FlowModel, SequentialFlow, StandardNormal
        >>> model = FlowModel(SequentialFlow(), StandardNormal((2,)), input_shape=(2,))
        >>> model.sample(5).shape, model.sample((3, 4)).shape, model.sample().shape
        (torch.Size([5, 2]), torch.Size([3, 4, 2]), torch.Size([2]))
        """
        x, _, _, shape = self._generate(sample_shape, context, temperature, chunk_size, with_logdet=False)
        return self._finish(x, shape, raw)

    def rsample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None,
                temperature: float = 1.0, raw: bool = False) -> Tensor:
        """Like ``sample``, but differentiable: ``x = f^{-1}(T·ε; c)``, ``ε ~ N(0, I)`` (the
        reparametrisation), with gradients to the model's parameters (and to a floating context).
        Refused, naming the layer, unless every layer's inverse is differentiable
        (``has_rsample``). Clamping images to [0, 1] (``raw=False``) has zero gradient where it clamps.
        """
        self._check_rsample("rsample")
        x, _, _, shape = self._generate(sample_shape, context, temperature, SAMPLE_CHUNK, with_logdet=False)
        return self._finish(x, shape, raw)

    def rsample_and_log_prob(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None,
                             temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """``(x, log p(x | c))`` in one differentiable pass (reverse-KL / variational inference):
        ``x = f^{-1}(T·ε; c)`` raw and ``log p(x) = log p_Z(z) − log|det ∂x/∂z|`` from the inverse's own
        log-det, both with gradients to the parameters. Refused like ``rsample``."""
        self._check_rsample("rsample_and_log_prob")
        return self._sample_and_log_prob(sample_shape, context, temperature, SAMPLE_CHUNK)

    def _sample_and_log_prob(self, sample_shape: int | Sequence[int], context: object, temperature: float,
                             chunk_size: int) -> tuple[Tensor, Tensor]:
        x, z, logdet, shape = self._generate(sample_shape, context, temperature, chunk_size, with_logdet=True)
        log_prob = self.prior.log_prob(z) - logdet
        return self._finish(x, shape, raw=True), log_prob.reshape(shape)

    @torch.no_grad()
    def sample_and_log_prob(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None,
                            temperature: float = 1.0, chunk_size: int = SAMPLE_CHUNK
                            ) -> tuple[Tensor, Tensor]:
        """``(x, log p(x | c))`` in one pass, without gradients: ``log p(x) = log p_Z(z) − log|det ∂x/∂z|``
        from the inverse's own log-det, no second forward. ``x`` is the raw ``f^{-1}(z)`` (not
        clamped), the point whose density ``log p`` is; ``log p`` is the model's density at
        temperature 1 whatever ``temperature`` draws ``z``. For residual flows the log-det, hence
        ``log p``, is the blocks' stochastic unbiased estimate, as in ``log_prob``.
        """
        return self._sample_and_log_prob(sample_shape, context, temperature, chunk_size)

    def bits_per_dim(self, x_int: Tensor, n_bits: int, context: Tensor | None = None) -> Tensor:
        """Per-sample bits/dim of integer images given ``context``, docs/architecture.md section 3.

        ``x = (x_int + u) / K`` with ``u ~ U[0,1)^D``, ``K = 2^n_bits``, and
        ``bpd = (-log p(x | c) + D log K) / (D ln 2)``.
        """
        x = dequantize(x_int, n_bits, dtype=self.dtype)
        return nats_to_bits_per_dim(self.log_prob(x, context), self.dims, n_bits)


__all__ = ["FlowModel", "Prior", "nats_to_bits_per_dim"]
