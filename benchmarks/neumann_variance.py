"""Which Neumann gradient form to use by default: the variance of the two unbiased forms of
``invflow.residual.logdet.neumann_logdet`` on trained residual blocks, at equal cost.

- ``derivative``: ``Σ_{j=0}^{K-1} (-1)^j / P(N >= j+1-m) · vᵀ J^j (∂J) v``, the derivative of the
  log-det estimate itself;
- ``theorem2``: ``Σ_{k=0}^{K} (-1)^k / P(N >= k-m) · vᵀ J^k (∂J) v``, Chen et al. 2019, Theorem 2
  and their code.

Each draw uses the same roulette length ``N`` and the same Gaussian probe ``v`` for both forms (the
same ``K = m + N`` vector–Jacobian products for the value, one differentiable product for the
gradient), so the comparison is at equal cost and paired. For every residual block of two trained
models — ``resflow-mnist-tiny`` (convolutional blocks on real MNIST) and ``resflow-toy-checkerboard``
(2D MLP blocks, trained with exact log-dets; the estimator applied afterwards) — the block's input
is taken from a held-out batch, and over ``--draws`` draws the script records the gradient of the
batch-mean log-det in the block's parameters: the total variance ``E||ĝ - E ĝ||²`` of each form,
their ratio, and the paired mean difference in standard errors (both unbiased: it should be small;
measured along the direction the first half of the draws points to, on the second half). The
roulette's weights ``1/P(N >= k)`` make the draws heavy-tailed, so that z-score is only a rough
check (a few blocks read 3-6); unbiasedness itself is proven exactly in
``tests/residual/test_residual_logdet.py``, by summing over N's distribution.

    python benchmarks/neumann_variance.py --data-dir ../shared/data/mnist [--draws 100]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import RESULTS, environment, print_environment, train_run, write_results

from invflow.api import load_model
from invflow.data import load_image_split
from invflow.data.dequantize import dequantize
from invflow.data.toy2d import checkerboard
from invflow.residual import InvertibleResidualBlock
from invflow.residual.logdet import (
    hutchinson_vector,
    neumann_logdet,
    roulette_weights,
    sample_roulette_length,
)

FORMS = ("derivative", "theorem2")
MODELS = {  # preset -> training settings for this measurement (the presets' own otherwise)
    "resflow-mnist-tiny": ("train.steps=400",),
    "resflow-toy-checkerboard": ("train.steps=1000",),
}


Inputs = list[tuple[InvertibleResidualBlock, torch.Tensor]]


def block_inputs(model: torch.nn.Module, x: torch.Tensor) -> Inputs:
    """Every residual block of ``model`` with the input it receives when ``model`` scores ``x``."""
    seen: list[tuple[InvertibleResidualBlock, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((m, args[0].detach())))
             for m in model.modules() if isinstance(m, InvertibleResidualBlock)]
    with torch.no_grad():
        model.log_prob(x)
    for h in hooks:
        h.remove()
    return seen


def gradient_draws(block: InvertibleResidualBlock, x: torch.Tensor, draws: int, seed: int
                   ) -> dict[str, torch.Tensor]:
    """``draws`` paired gradient estimates (flattened over the block's parameters) per form."""
    block.train()
    params = [p for p in block.g.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {form: [] for form in FORMS}
    for _ in range(draws):
        n = sample_roulette_length(block.n_dist, block.n_dist_param)
        weights = roulette_weights(block.n_exact_terms, n, block.n_dist, block.n_dist_param)
        xr = x.clone().requires_grad_(True)
        gx = block.g(xr)
        v = hutchinson_vector(xr, block.hutchinson)
        for form in FORMS:
            _, surrogate = neumann_logdet(gx, xr, v, weights, form)
            grads = torch.autograd.grad(surrogate.mean(), params, retain_graph=True, materialize_grads=True)
            out[form].append(torch.cat([g.reshape(-1) for g in grads]))
    block.eval()
    return {form: torch.stack(rows) for form, rows in out.items()}


def compare(draws: dict[str, torch.Tensor]) -> dict[str, float]:
    a, b = draws["derivative"].double(), draws["theorem2"].double()
    var = {form: float(d.double().var(dim=0).sum()) for form, d in draws.items()}
    diff = a - b  # paired
    half = diff.shape[0] // 2  # the direction from one half, the test on the other: no selection bias
    direction = diff[:half].mean(dim=0)
    projected = diff[half:] @ direction / direction.norm().clamp_min(1e-30)
    se = float(projected.std() / projected.numel() ** 0.5)
    return {
        "var_derivative": var["derivative"], "var_theorem2": var["theorem2"],
        "ratio_theorem2_over_derivative": var["theorem2"] / var["derivative"],
        "mean_difference_in_se": float(projected.mean()) / se if se > 0 else 0.0,
        "grad_norm": float(a.mean(dim=0).norm()),
    }


def held_out_batch(config, data_dir: str | None, batch: int) -> torch.Tensor:
    if config.data.dataset == "checkerboard":
        return checkerboard(batch, torch.Generator().manual_seed(1))
    data = load_image_split(config.data.dataset, "test", data_dir, config.data.image_size, config.data.n_bits)
    return dequantize(data.images[:batch], config.data.n_bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="the MNIST folder")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="held-out images (points) per block input")
    parser.add_argument("--runs", type=Path, default=Path("runs/neumann-variance"))
    parser.add_argument("--out", type=Path, default=RESULTS / "neumann_variance.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = environment(draws=args.draws, batch=args.batch)
    print_environment(meta)
    rows = []
    for preset, settings in MODELS.items():
        run, _ = train_run(preset, args.runs / preset, args.data_dir, *settings)
        loaded = load_model(run)
        model = loaded.model.double()
        batch = 500 if preset.endswith("checkerboard") else args.batch
        x = held_out_batch(loaded.config, args.data_dir, batch)
        for index, (block, inputs) in enumerate(block_inputs(model, x.double())):
            stats = compare(gradient_draws(block, inputs, args.draws, seed=index))
            rows.append({"model": preset, "training": list(settings), "block": index,
                         "n_dist": block.n_dist, "n_dist_param": block.n_dist_param,
                         "n_exact_terms": block.n_exact_terms, **stats})
            print(f"{preset} block {index:2d}: variance theorem2/derivative "
                  f"{stats['ratio_theorem2_over_derivative']:.3f}, paired mean difference "
                  f"{stats['mean_difference_in_se']:+.1f} SE")
    for preset in MODELS:
        ratios = [r["ratio_theorem2_over_derivative"] for r in rows if r["model"] == preset]
        print(f"{preset}: median variance ratio theorem2/derivative {statistics.median(ratios):.3f} "
              f"over {len(ratios)} blocks [min {min(ratios):.3f}, max {max(ratios):.3f}]")
    print("wrote", write_results(args.out, meta, rows))


if __name__ == "__main__":
    main()
