"""`invflow reconstruct`, `interpolate` and `plot` on tiny trained runs of every family."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invflow import run_files
from invflow.cli import main

TINY = ["--set", "train.steps=6", "--set", "data.batch_size=8", "--set", "train.eval_every=3",
        "--set", "train.eval_batches=1", "--set", "train.n_samples_grid=4", "--set", "train.log_every=1",
        "--set", "train.tensorboard=false", "--set", "train.warmup_steps=1", "--set", "train.lr=0.01"]
IMAGE = ["--set", "data.dataset=folder", "--set", "data.image_size=8"]
# (preset, extra settings, bound on the reconstruction's max pixel error on the [0, 1] scale)
RUNS = {
    "glow": (
        "glow-cifar10-tiny",
        [*IMAGE, "--set", "model.steps_per_level=2", "--set", "model.hidden_channels=8"],
        1e-4,
    ),
    "woodbury": (
        "woodbury-glow-cifar10-tiny",
        [*IMAGE, "--set", "model.steps_per_level=1", "--set", "model.hidden_channels=8"],
        1e-4,
    ),
    "resflow": (
        "resflow-cifar10-tiny",
        [*IMAGE, "--set", "model.blocks_per_scale=1", "--set", "model.hidden_channels=8"],
        1e-3,
    ),
    "glow-toy": (
        "glow-toy-rings",
        [
            "--set",
            "data.toy_samples=64",
            "--set",
            "model.steps_per_level=2",
            "--set",
            "model.hidden_channels=8",
        ],
        1e-4,
    ),
    "resflow-toy": (
        "resflow-toy-rings",
        [
            "--set",
            "data.toy_samples=64",
            "--set",
            "model.blocks_per_scale=2",
            "--set",
            "model.hidden_channels=8",
        ],
        1e-3,
    ),
}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """40 smooth 8x8 RGB images (blobs on gradients); the folder data set keeps the last 4 for test."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8] / 7.0
    for i in range(40):
        cy, cx = rng.uniform(0, 1, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.1)
        channels = [
            blob * rng.uniform(0.5, 1) + (xx if c == 0 else yy) * rng.uniform(0, 0.4) for c in range(3)
        ]
        pixels = np.clip(np.stack(channels, axis=-1) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folder):
    """Train each tiny run once per module, on first use."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            preset, extra, _ = RUNS[name]
            run = tmp_path_factory.mktemp("runs") / name
            assert (
                main(["train", preset, *TINY, *extra, "--data-dir", str(image_folder), "--out", str(run)])
                == 0
            )
            runs[name] = run
        return runs[name]

    return get


def is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.width > 0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_reconstruct_every_family(name: str, trained, tmp_path: Path, capsys) -> None:
    run = trained(name)
    capsys.readouterr()
    out = tmp_path / "reconstruct.png"
    assert main(["reconstruct", str(run), "-n", "6", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    error = float(re.search(r"max \|x - f\^-1\(f\(x\)\)\| = (\S+)", printed).group(1))
    assert 0 <= error < RUNS[name][2], printed
    assert is_png(out)
    if name.startswith("resflow"):
        assert re.search(r"\(\d+ fixed-point iterations over \d+ residual blocks\)", printed), printed
    else:
        assert "fixed-point" not in printed


@pytest.mark.parametrize("name", sorted(RUNS))
def test_interpolate_every_family(name: str, trained, capsys) -> None:
    run = trained(name)
    capsys.readouterr()
    assert main(["interpolate", str(run), "--pairs", "2", "--steps", "5"]) == 0
    printed = capsys.readouterr().out
    assert is_png(run / "interpolate.png") and "2 pair(s)" in printed
    assert ("fixed-point iterations" in printed) == name.startswith("resflow")


def test_interpolation_ends_are_the_examples(trained, image_folder) -> None:
    """t = 0 and t = 1 decode the two examples themselves (up to the inverse's error), the middle does not."""
    from invflow.api import load_checkpoint
    from invflow.latent import held_out_examples, interpolate

    model, config = load_checkpoint(trained("glow"))
    x, _ = held_out_examples(config, 4, str(image_folder))
    result = interpolate(model, x[:2], x[2:], steps=3)
    assert result.paths.shape == (2, 3, 3, 8, 8)
    assert (result.paths[:, 0] - x[:2]).abs().max() < 1e-4 and (
        result.paths[:, -1] - x[2:]
    ).abs().max() < 1e-4
    assert (result.paths[:, 1] - x[:2]).abs().max() > 1e-3


def test_plot_one_and_several_runs(trained, tmp_path: Path, capsys) -> None:
    glow, woodbury = trained("glow"), trained("woodbury")
    assert main(["plot", str(glow)]) == 0
    assert is_png(glow / "curves.png")
    out = tmp_path / "both.png"
    assert main(["plot", str(glow), str(woodbury), "-o", str(out)]) == 0
    assert is_png(out) and f"wrote {out}" in capsys.readouterr().out


def test_outputs_are_not_overwritten_without_force(trained, tmp_path: Path, capsys) -> None:
    run = trained("glow-toy")
    out = tmp_path / "figure.png"
    earlier = b"\x89PNG\r\n\x1a\n an earlier figure"
    out.write_bytes(earlier)
    for command in (
        ["sample", str(run)],
        ["reconstruct", str(run)],
        ["interpolate", str(run)],
        ["plot", str(run)],
    ):
        assert main([*command, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{out} exists; pass --force to overwrite it" in err
        assert out.read_bytes() == earlier
        assert main([*command, "-o", str(out), "--force"]) == 0
        assert is_png(out)
        out.write_bytes(earlier)


def test_plot_refuses_what_is_not_a_run(trained, tmp_path: Path, capsys) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["plot", str(trained("glow")), str(trained("glow-toy")), "-o", str(tmp_path / "x.png")]) == 2
    assert "cannot plot runs measured in bits and bpd on one axis" in capsys.readouterr().err


def test_interpolate_needs_two_steps(trained, capsys) -> None:
    assert main(["interpolate", str(trained("glow-toy")), "--steps", "1", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interpolation needs at least 2 steps (both ends), got 1" in err


def test_force_never_replaces_what_is_not_a_png_figure(trained, tmp_path: Path, capsys) -> None:
    """`-o PATH --force` replaces an earlier PNG figure and nothing else: not a device, a directory,
    a link, a run's own checkpoint or config, nor a file that merely ends in .png."""
    run = trained("glow-toy")
    text = tmp_path / "notes.png"
    text.write_bytes(b"my notes")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "link.png").symlink_to(text)
    cases = [
        ("/dev/null", "invflow writes PNG images; give a path ending in .png"),
        (str(run / run_files.LAST_PATH), "give a path ending in .png"),
        (str(run / run_files.CONFIG), "give a path ending in .png"),
        (str(tmp_path / run_files.SAMPLES), "give a path ending in .png"),
        (str(tmp_path / "s.jpg"), "give a path ending in .png"),
        (str(tmp_path / "folder.png"), "is a directory; give the path of a new .png file"),
        (str(tmp_path / "link.png"), "is a link; give the path of a new .png file"),
        (str(text), "exists and is not a PNG image; invflow replaces only PNG figures, even with --force"),
    ]
    before = {p: p.read_bytes() for p in (run / run_files.LAST_PATH, run / run_files.CONFIG, text)}
    for command in (["sample", str(run)], ["reconstruct", str(run)], ["interpolate", str(run)],
                    ["plot", str(run)]):
        for target, message in cases:
            assert main([*command, "-o", target, "--force"]) == 2, (command, target)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and message in err, (command, target, err)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert Path("/dev/null").is_char_device()
