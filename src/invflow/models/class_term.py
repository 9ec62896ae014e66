"""Glow's class-prediction term for class-conditional image models.

The Glow code's class-conditional samples (Kingma & Dhariwal 2018, github.com/openai/glow, options
``--ycond --weight_y=0.01`` of its conditional CIFAR-10 and ImageNet runs) come from a model trained
on ``bits/dim + w · bits_y``: besides the class-conditional prior, a zero-initialised linear
classifier reads the spatial mean of the top latent ``z_L`` and ``bits_y = CE(y, softmax(W·mean(z_L)
+ b)) / ln 2`` is its cross-entropy in bits per image. Why it matters: a label carries at most
``log2 K`` bits per image (0.004 bits/dim on MNIST), so likelihood alone gives the label almost no
pull, and a small conditional model spends its capacity on the density and keeps the classes
mixed in its latents; the term makes ``z_L`` separate the classes, so that sampling ``z_L`` from
the class's prior decodes to that class.

The reported metric stays the conditional bits/dim ``−log p(x | y)``; the term only changes what
training minimises (``ClassTermObjective``), and reads nothing at sampling time. ``w = 0`` (the
default of ``model.class_loss_weight``) builds the plain ``FlowModel``, bit for bit as before.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from invflow.core.context import ContextSpec
from invflow.core.distributions import StandardNormal
from invflow.core.flow import Flow, forward_of
from invflow.core.model import FlowModel
from invflow.core.objectives import Forward, ImageBitsPerDim, nats_to_bits_per_dim
from invflow.data.batch import Batch
from invflow.layers.conditional_prior import ConditionalGaussianPrior


class ClassTermObjective(ImageBitsPerDim):
    """Loss = mean bits/dim + ``weight`` · mean ``bits_y``; logs both and the classifier's accuracy
    on the batch (evaluation reports bits/dim alone)."""

    def __init__(self, n_bits: int, weight: float) -> None:
        super().__init__(n_bits)
        self.weight = weight

    def loss(self, model: FlowModel, batch: Batch, forward: Forward | None = None
             ) -> tuple[Tensor, dict[str, Tensor]]:
        forward = model if forward is None else forward
        log_p, outputs = forward(self.dequantized(model, batch), model.batch_context(batch))
        bpd = nats_to_bits_per_dim(log_p, model.dims, self.n_bits)
        logits = outputs["logits"]
        class_bits = F.cross_entropy(logits, batch.y) / math.log(2)
        accuracy = (logits.argmax(dim=1) == batch.y).float().mean()
        return bpd.mean() + self.weight * class_bits, {
            self.metric: bpd.detach().mean(), "class_bits": class_bits.detach(), "class_accuracy": accuracy}


class ClassPredictingFlowModel(FlowModel):
    """A class-conditional image ``FlowModel`` whose top latent also feeds Glow's linear classifier;
    ``forward`` returns ``(log p(x | y), {"logits": …})`` for ``ClassTermObjective``."""

    def __init__(self, flow: Flow, prior: StandardNormal, input_shape: tuple[int, ...],
                 context: ContextSpec | None, class_loss_weight: float) -> None:
        if context is None or context.num_classes is None or len(input_shape) != 3:
            got = "no context" if context is None else context.describe()
            raise ValueError("model.class_loss_weight needs a class-conditional image model "
                             f"(got {got} on per-sample shape {tuple(input_shape)})")
        tops = [name for name, m in flow.named_modules() if isinstance(m, ConditionalGaussianPrior)]
        if len(tops) != 1:
            raise ValueError("model.class_loss_weight needs a flow with one conditional top prior, "
                             f"found {len(tops)}")
        super().__init__(flow, prior, input_shape, context)
        self._top_prior_path = f"flow.{tops[0]}"  # a path, not a second registration of the layer
        self.class_loss_weight = class_loss_weight
        self.classifier = nn.Linear(self.top_prior.channels, context.num_classes)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    @property
    def top_prior(self) -> ConditionalGaussianPrior:
        """The top level's conditional Gaussian, whose input is ``z_L``."""
        return self.get_submodule(self._top_prior_path)  # type: ignore[return-value]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        encoded = self.encode_context(context, x.shape[0], "ClassPredictingFlowModel.forward")
        z, logdet = forward_of(self.flow, x, encoded)
        return self.prior.log_prob(z) + logdet, {"logits": self.top_logits(z, encoded)}

    def top_logits(self, z: Tensor, encoded_context: Tensor) -> Tensor:
        """The classifier's logits from the model's flat latents ``z``: the top level's standardised
        latents are the last ones (``FactorOut`` puts each level's factored part first), taken back
        through the top prior to ``z_L`` and averaged over space."""
        shape = self.top_prior.shape
        eps = z[:, z.shape[1] - math.prod(shape):].reshape(z.shape[0], *shape)
        top, _ = self.top_prior.inverse(eps, encoded_context)
        return self.classifier(top.mean(dim=(2, 3)))

    def make_objective(self, n_bits: int) -> ClassTermObjective:
        return ClassTermObjective(n_bits, self.class_loss_weight)
