"""The Glow-family presets of Lu & Huang 2020: the paper's numbers, and every ``-tiny`` variant learns.

The tiny models are trained on a small subset of the real MNIST files (CIFAR-10, ImageNet and the
image folders are not available to the tests); the model is built from the data config, so a
3-channel preset becomes a 1-channel model of the same architecture.
"""
import gzip
from pathlib import Path

import pytest
import torch

import invflow
from invflow import run_files
from invflow.data.mnist import FILES, load_mnist
from invflow.models import load_config
from invflow.train.loop import train
from invflow.train.metrics import read_metrics

SMALL_SETS = ("cifar10", "imagenet32", "imagenet64")
BIG_SETS = ("lsun-church96", "celebahq-64", "celebahq-128", "celebahq-256")
BASELINES = ("glow", "emerging-glow", "periodic-glow", "spline", "macow")
WOODBURY = ("woodbury-glow", "me-woodbury-glow")
CELEBAHQ = ("celebahq-64", "celebahq-128", "celebahq-256")
FULL = sorted([f"{f}-{d}" for f in WOODBURY for d in SMALL_SETS + BIG_SETS]
              + [f"{f}-{d}" for f in BASELINES for d in SMALL_SETS]
              + [f"glow-{d}" for d in CELEBAHQ])  # Table 4's Glow baselines
TINY = [f"{name}-tiny" for name in FULL]

# Written from ../shared/seeds/002_*.txt (Lu & Huang 2020, supplementary), not from the YAML files.
# Table 2: (mini-batch, levels L, steps K, coupling channels).
TABLE2 = {
    "cifar10": (64, 3, 8, 512), "imagenet32": (64, 3, 8, 512), "imagenet64": (32, 4, 16, 512),
    "lsun-church96": (16, 5, 16, 256), "celebahq-64": (8, 4, 16, 512), "celebahq-128": (4, 5, 24, 256),
    "celebahq-256": (4, 6, 16, 256),
}
# Table 3: Woodbury (d_c, d_s); ME-Woodbury (d_c, d_h, d_w), None where the table has "—".
TABLE3 = {
    "cifar10": (([8, 8, 16], [16, 16, 8]), ([8, 8, 16], [16, 16, 8], [16, 16, 8])),
    "imagenet32": (([8, 8, 16], [16, 16, 8]), ([8, 8, 16], [16, 16, 8], [16, 16, 8])),
    "imagenet64": (([8, 8, 16, 16], [16, 16, 8, 8]), ([8, 8, 16, 16], [16, 16, 8, 8], [16, 16, 8, 8])),
    "lsun-church96": (([8, 8, 16, 16, 16], [16, 16, 16, 8, 8]), None),
    "celebahq-64": (([8, 8, 16, 16], [16, 16, 8, 8]), None),
    "celebahq-128": (([8, 8, 16, 16, 16], [16, 16, 16, 8, 8]), None),
    "celebahq-256": (([8, 8, 16, 16, 16, 16], [16, 16, 16, 16, 8, 8]), None),
}
# App. D: iterations (64x64: 600,000; 128 and 256: 300,000), a random 3,000-image test set;
# figure captions: temperature 0.7 (Fig. 7, 64x64), 0.5 (Figs. 8-9, 128 and 256), 0.875 (Fig. 6, LSUN).
APPENDIX_D = {"celebahq-64": (600_000, 0.7), "celebahq-128": (300_000, 0.5), "celebahq-256": (300_000, 0.5)}
TEMPERATURE = {"lsun-church96": 0.875, **{k: v[1] for k, v in APPENDIX_D.items()}}
# Table 4: CelebA-HQ test bits/dim, (Glow, Woodbury-Glow); Figures 1-2 show Glow's samples at 0.7.
TABLE4 = {"celebahq-64": (1.27, 1.23), "celebahq-128": (1.09, 1.04), "celebahq-256": (0.93, 0.93)}
# App. C.1: baselines' coupling and channels (32x32 images, 64x64 images); spline with 4 bins.
COUPLINGS = {
    "glow": ("affine", 512, 512),
    "emerging-glow": ("affine", 512, 512),
    "periodic-glow": ("affine", 512, 512),
    "spline": ("spline", 256, 224),
    "macow": ("macow", 384, 296),
}


def test_every_family_has_a_full_and_a_tiny_preset() -> None:
    table = invflow.presets()
    missing = [name for name in FULL + TINY if name not in table]
    assert not missing
    assert all("Lu & Huang 2020" in table[name] for name in FULL)


@pytest.mark.parametrize("data", sorted(TABLE2))
@pytest.mark.parametrize("family", WOODBURY)
def test_woodbury_presets_carry_tables_2_and_3(family: str, data: str) -> None:
    batch, levels, steps, hidden = TABLE2[data]
    config = load_config(f"{family}-{data}")
    model = config.model
    assert (model.levels, model.steps_per_level, model.hidden_channels, config.data.batch_size) == \
        (levels, steps, hidden, batch)
    assert model.coupling.name == "affine" and config.train.lr == 0.001
    (d_c, d_s), me = TABLE3[data]
    mixing = model.mixing
    if family == "woodbury-glow":
        assert mixing.name == "woodbury" and (mixing.latent_channel, mixing.latent_spatial) == (d_c, d_s)
    else:
        assert mixing.name == "me-woodbury"
        dims = (mixing.latent_channel, mixing.latent_height, mixing.latent_width)
        if me is not None:
            assert dims == me
        else:  # "—" in Table 3: an extrapolation, said so in the description
            assert dims == (d_c, d_s, d_s) and "EXTRAPOLATION" in config.description


@pytest.mark.parametrize("data", sorted(TABLE2))
def test_appendix_d_iterations_test_split_and_temperature(data: str) -> None:
    config = load_config(f"woodbury-glow-{data}")
    if data in APPENDIX_D:
        assert config.train.steps == APPENDIX_D[data][0]
        assert config.data.folder_test_images == 3000
    assert config.train.sample_temperature == TEMPERATURE.get(data, 1.0)
    assert config.train.eval_every == 10_000  # "test it every 10,000 iterations" (app. C.1)


@pytest.mark.parametrize("family", BASELINES)
def test_baselines_carry_table_2_and_the_app_c1_couplings(family: str) -> None:
    coupling, small, large = COUPLINGS[family]
    mixing = {"emerging-glow": "emerging", "periodic-glow": "periodic"}.get(family, "lu")
    for data in SMALL_SETS:
        batch, levels, steps, _ = TABLE2[data]
        config = load_config(f"{family}-{data}")
        model = config.model
        assert (model.levels, model.steps_per_level, config.data.batch_size) == (levels, steps, batch)
        hidden = large if data == "imagenet64" else small
        assert (model.mixing.name, model.coupling.name, model.hidden_channels) == (mixing, coupling, hidden)
        assert coupling != "spline" or model.coupling.bins == 4


@pytest.mark.parametrize("data", CELEBAHQ)
def test_table_4_glow_baselines_carry_table_2(data: str) -> None:
    """Glow against Woodbury-Glow as Table 4: the same sizes, data and schedule, LU 1x1 mixing."""
    glow, woodbury = load_config(f"glow-{data}"), load_config(f"woodbury-glow-{data}")
    batch, levels, steps, hidden = TABLE2[data]
    m = glow.model
    assert (m.levels, m.steps_per_level, m.hidden_channels) == (levels, steps, hidden)
    assert glow.data.batch_size == batch
    assert (glow.model.mixing.name, glow.model.coupling.name) == ("lu", "affine")
    assert glow.data == woodbury.data and glow.train.steps == woodbury.train.steps == APPENDIX_D[data][0]
    assert glow.train.sample_temperature == 0.7


def test_configs_paper_shows_table_4_beside_both_families(capsys) -> None:
    from invflow.cli import main

    assert main(["configs", "--paper"]) == 0
    out = capsys.readouterr().out
    for data, (glow, woodbury) in TABLE4.items():
        for family, bits in (("glow", glow), ("woodbury-glow", woodbury)):
            block = out.split(f"\n{family}-{data}  ")[1].split("\n")[:5]  # verdict, 3 table lines, reported
            assert block[4] == f"  reported: Table 4: {bits} bits/dim on the CelebA-HQ test set", block


@pytest.mark.parametrize("name", FULL)
def test_data_and_tiny_variants(name: str) -> None:
    full, tiny = load_config(name), load_config(f"{name}-tiny")
    big = name.endswith(BIG_SETS)
    assert full.data.n_bits == (5 if big else 8) and tiny.data.n_bits == full.data.n_bits
    assert full.data.dataset == ("folder" if big else name.split("-")[-1])
    assert (full.data.image_size is not None) == big
    if big:
        assert (
            full.data.image_size == int(name.split("-")[-1].removeprefix("church"))
            and tiny.data.image_size == 32
        )
    assert tiny.model.mixing.name == full.model.mixing.name
    assert tiny.model.coupling.name == full.model.coupling.name
    assert tiny.model.levels == 2 and tiny.model.steps_per_level == 4 and tiny.model.hidden_channels == 64
    assert tiny.description != full.description


@pytest.fixture
def mnist_subset(mnist_dir: Path, tmp_path_factory) -> Path:
    """The first images of the real MNIST files, rewritten once per session as IDX files so that
    each run loads in milliseconds rather than decoding all 70,000 images."""
    folder = tmp_path_factory.getbasetemp() / "mnist-subset"
    if folder.is_dir():
        return folder
    folder.mkdir()
    for split, count in (("train", 512), ("test", 64)):
        images, labels, _ = load_mnist(split, str(mnist_dir), download=False)
        image_file, label_file = FILES[split]
        _write_idx(folder / image_file, 2051, images[:count, 0].numpy().tobytes(), (count, 28, 28))
        _write_idx(folder / label_file, 2049, labels[:count].numpy().astype("uint8").tobytes(), (count,))
    return folder


def _write_idx(path: Path, magic: int, payload: bytes, dims: tuple[int, ...]) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


@pytest.fixture
def one_thread():
    """Train on one thread: on a shared 2-core machine, two spinning threads per test run many times
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_learns(name: str, mnist_subset: Path, tmp_path: Path) -> None:
    config = load_config(
        name,
        {
            "data.dataset": "mnist",
            "data.image_size": 16,
            "data.data_dir": str(mnist_subset),
            "data.batch_size": 16,
            "train.steps": 15,
            "train.log_every": 1,
            "train.warmup_steps": 2,
            "train.eval_batches": 1,
            "train.eval_every": 1000,
            "train.sample_every": 1000,
            "train.checkpoint_every": 1000,
            "train.n_samples_grid": 4,
            "train.device": "cpu",
        },
    )
    result = train(config, tmp_path / "run", progress=False)
    bpd = [
        r["bpd"]
        for r in read_metrics(tmp_path / "run" / run_files.METRICS)
        if r["split"] == "train" and "bpd" in r
    ]
    assert len(bpd) == 15 and result.nonfinite == 0
    first, last = sum(bpd[:3]) / 3, sum(bpd[-3:]) / 3
    assert last < first - 0.2, bpd  # measured drops are 0.4 to 1.2 bits/dim
