"""Command-line arguments of the small MNIST comparisons the tests run (16x16, tiny widths)."""

PRESETS = ["glow-mnist-tiny", "woodbury-glow-cifar10-tiny"]


def fast_args(mnist_dir, out, steps: int, checkpoint_every: int = 1000) -> list[str]:
    """``invflow compare`` arguments after the presets: a handful of steps of very small models."""
    sets = {"data.dataset": "mnist", "data.image_size": 16, "model.hidden_channels": 8,
            "model.steps_per_level": 1, "train.log_every": 2, "train.eval_every": 4, "train.eval_batches": 1,
            "train.sample_every": 1000, "train.checkpoint_every": checkpoint_every, "train.n_samples_grid": 4,
            "train.warmup_steps": 2}
    args = ["--steps", str(steps), "--out", str(out), "--data-dir", str(mnist_dir)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args
