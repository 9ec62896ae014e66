"""Hybrid generative/discriminative Residual Flow (Chen et al. 2019, sec. 6.3;
docs/architecture.md section 4).

The flow is the ResFlow image model without factor-out. Its input transform follows app. E:
"For hybrid modeling on CIFAR-10, we replaced the logit transform with normalization by the
standard preprocessing of subtracting the mean and dividing by the standard deviation", while "the
MNIST and SVHN architectures for hybrid modeling were the same as those for density modeling": the
logit transform when ``logit_alpha`` is set, per-channel standardisation when it is ``None``.
A classifier branch reads the hidden state after every squeeze and at the end:
``3x3 conv → ActNorm → ReLU → global average pool`` to ``classifier_width`` features; the
branches are concatenated into a linear softmax. Training minimises
``−(λ·log p(x) + log p(y|x))`` with ``λ = hybrid_weight`` (``None`` → ``1/D``), the model's own
objective (``HybridObjective``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invflow.config import DataConfig, positive
from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flatten, Flow, SequentialFlow, name_layers
from invflow.core.objectives import Forward, ImageBitsPerDim, nats_to_bits_per_dim
from invflow.data.batch import Batch
from invflow.data.registry import channel_stats, input_shape
from invflow.layers.actnorm import ActNorm
from invflow.layers.logit import LogitTransform
from invflow.layers.normalize import Standardize
from invflow.layers.squeeze import Squeeze
from invflow.models.resflow import ResFlowConfig, ResFlowModel, residual_stage, squeezed


@dataclass
class HybridConfig(ResFlowConfig):
    """``model`` section of a hybrid preset: a ResFlow plus the classifier's settings."""

    logit_alpha: float | None = None
    classifier_width: int = 256
    num_classes: int = 10
    hybrid_weight: float | None = None

    def validate(self) -> None:
        super().validate()
        positive(self, "classifier_width", "num_classes")
        if self.factor_out:
            raise ValueError(
                "model.factor_out is not supported by the hybrid model (the classifier reads full states)"
            )
        if self.conditional:
            raise ValueError("model.conditional is not supported by the hybrid model (it models p(x) and "
                             "p(y | x)); use a conditional glow or resflow preset for p(x | y)")
        if self.hybrid_weight is not None and self.hybrid_weight < 0:
            raise ValueError(f"model.hybrid_weight (λ) must be >= 0, got {self.hybrid_weight}")

    def check_data(self, data, config) -> None:
        """A classifier needs labels it can hold: refuse unlabelled data (image folders; every
        label would be 0 and accuracy a meaningless 1.0) and more classes than ``num_classes``
        (the hook ``invflow.data.splits.load_split`` calls with the whole config)."""
        where = f"{config.name}: data.dataset {config.data.dataset!r}"
        if data.num_classes < 2:
            raise ValueError(
                f"{config.name}: the hybrid model (a classifier) needs class labels, but data.dataset "
                f"{config.data.dataset!r} has none; use a labelled data set (mnist, cifar10, svhn, "
                "imagenet32, imagenet64) or a preset that is not hybrid")
        if data.num_classes > self.num_classes:
            raise ValueError(f"{where} has {data.num_classes} classes but model.num_classes is "
                             f"{self.num_classes}; set --set model.num_classes={data.num_classes}")


class HybridObjective(ImageBitsPerDim):
    """``−(λ·log p(x) + log p(y|x))`` averaged over the batch, with λ = ``model.hybrid_weight``;
    λ = 0 trains a pure classifier. Reports bits/dim, cross-entropy and accuracy."""

    extras = ("accuracy",)

    def loss(self, model: HybridModel, batch: Batch, forward: Forward | None = None
             ) -> tuple[Tensor, dict[str, Tensor]]:
        log_p, outputs = (model if forward is None else forward)(self.dequantized(model, batch), None)
        logits = outputs["logits"]
        bpd = nats_to_bits_per_dim(log_p, model.dims, self.n_bits)
        cross_entropy = F.cross_entropy(logits, batch.y)
        loss = -model.hybrid_weight * log_p.mean() + cross_entropy
        accuracy = (logits.argmax(dim=1) == batch.y).float().mean()
        return loss, {self.metric: bpd.detach().mean(), "cross_entropy": cross_entropy.detach(),
                      "accuracy": accuracy.detach()}

    def eval_batch(self, model: HybridModel, batch: Batch, draws: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.dequantized(model, batch)
        values, logits = [], None
        for _ in range(draws):
            log_p, logits = model.log_prob_and_logits(x)
            values.append(nats_to_bits_per_dim(log_p, model.dims, self.n_bits))
        return torch.stack(values), {"accuracy": (logits.argmax(dim=1) == batch.y).to(values[0].dtype)}


class ClassifierBranch(nn.Module):
    """``3x3 conv → ActNorm → ReLU → global average pool`` to ``width`` features."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.norm = ActNorm(width)

    def forward(self, h: Tensor) -> Tensor:
        return torch.relu(self.norm(self.conv(h))[0]).mean(dim=(2, 3))


class HybridModel(ResFlowModel):
    """A ResFlow whose hidden states also feed a classifier; ``log_prob_and_logits`` gives both."""

    def __init__(self, flow: SequentialFlow, prior: StandardNormal, input_shape: tuple[int, int, int],
                 config: HybridConfig, tap_channels: list[int]) -> None:
        super().__init__(flow, prior, input_shape, config)
        self.branches = nn.ModuleList(ClassifierBranch(c, config.classifier_width) for c in tap_channels)
        self.head = nn.Linear(config.classifier_width * len(tap_channels), config.num_classes)
        self.hybrid_weight = 1.0 / self.dims if config.hybrid_weight is None else config.hybrid_weight
        name_layers(self)  # the classifier branches' ActNorms too

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``(log p(x), {"logits": class logits})``, what the hybrid objective trains (unconditional:
        a context is refused)."""
        self.encode_context(context, x.shape[0], "HybridModel.forward")
        log_p, logits = self.log_prob_and_logits(x)
        return log_p, {"logits": logits}

    def make_objective(self, n_bits: int) -> HybridObjective:
        return HybridObjective(n_bits)

    def log_prob_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(log p(x), class logits)``; the classifier taps the state after every squeeze and the last."""
        logdet = x.new_zeros(x.shape[0])
        taps = []
        h = x
        for layer in self.flow.flows:
            if isinstance(layer, Flatten):
                taps.append(h)
            h, ld = layer(h)
            logdet = logdet + ld
            if isinstance(layer, Squeeze):
                taps.append(h)
        features = torch.cat([branch(t) for branch, t in zip(self.branches, taps)], dim=1)
        return self.prior.log_prob(h) + logdet, self.head(features)


def build_hybrid(cfg: HybridConfig, shape: tuple[int, ...], dataset: str) -> HybridModel:
    """The hybrid model for ``(C, H, W)`` images of ``dataset`` (for its channel statistics)."""
    if len(shape) != 3:
        raise ValueError("the hybrid model needs image data")
    image_shape = (shape[0], shape[1], shape[2])
    if cfg.logit_alpha is not None:
        flows: list[Flow] = [LogitTransform(image_shape, cfg.logit_alpha)]
    else:
        mean, std = channel_stats(dataset, shape[0])
        flows = [Standardize(image_shape, mean, std)]
    taps = []
    if cfg.squeeze_first:
        flows.append(Squeeze(shape[0]))
        shape = squeezed(image_shape, "before the first scale")
        taps.append(shape[0])
    for scale in range(cfg.scales):
        if scale:
            flows.append(Squeeze(shape[0]))
            shape = squeezed(shape, f"at scale {scale}")
            taps.append(shape[0])
        flows += residual_stage(cfg, shape, scale=scale)
    flows.append(Flatten(shape))
    taps.append(shape[0])
    numel = shape[0] * shape[1] * shape[2]
    return HybridModel(SequentialFlow(*flows), StandardNormal((numel,)), image_shape, cfg, taps)


def build(cfg: HybridConfig, data: DataConfig) -> HybridModel:
    """The registry's builder: the hybrid model for the images of ``data``."""
    return build_hybrid(cfg, input_shape(data), data.dataset)
