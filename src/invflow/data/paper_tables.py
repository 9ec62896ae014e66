"""The papers' own numbers for the presets that name a paper, for ``invflow configs --paper``.

Written from the supplementary material in ``../shared/seeds/``: Lu & Huang 2020 (Woodbury
Transformations), Table 2 (mini-batch, levels L, steps K, coupling channels), Table 3 (latent
dims per level; "—" for ME-Woodbury on LSUN and CelebA-HQ), app. C.1 (spline/MaCow channels),
app. D (CelebA-HQ: 600,000 / 300,000 iterations, a random 3,000-image test set) and the figure
captions (sampling temperatures); Chen et al. 2019 (Residual Flows), app. E (architectures,
alpha, preprocessing, Polyak 0.999) and app. D (checkerboard: 200 blocks, brute-force log-det).
``None`` means the paper does not give the number. The test suite holds its own copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from invflow.config import Config

# Lu & Huang 2020, Table 2: data set -> (mini-batch, L, K, coupling channels); app. D/E for the rest.
WOODBURY_TABLE2 = {
    "cifar10": (64, 3, 8, 512), "imagenet32": (64, 3, 8, 512), "imagenet64": (32, 4, 16, 512),
    "lsun-church96": (16, 5, 16, 256), "celebahq-64": (8, 4, 16, 512), "celebahq-128": (4, 5, 24, 256),
    "celebahq-256": (4, 6, 16, 256),
}
# Table 3: data set -> (Woodbury d_c, d_s, ME-Woodbury (d_c, d_h, d_w) or None for "—").
WOODBURY_TABLE3 = {
    "cifar10": ([8, 8, 16], [16, 16, 8], ([8, 8, 16], [16, 16, 8], [16, 16, 8])),
    "imagenet32": ([8, 8, 16], [16, 16, 8], ([8, 8, 16], [16, 16, 8], [16, 16, 8])),
    "imagenet64": ([8, 8, 16, 16], [16, 16, 8, 8], ([8, 8, 16, 16], [16, 16, 8, 8], [16, 16, 8, 8])),
    "lsun-church96": ([8, 8, 16, 16, 16], [16, 16, 16, 8, 8], None),
    "celebahq-64": ([8, 8, 16, 16], [16, 16, 8, 8], None),
    "celebahq-128": ([8, 8, 16, 16, 16], [16, 16, 16, 8, 8], None),
    "celebahq-256": ([8, 8, 16, 16, 16, 16], [16, 16, 16, 16, 8, 8], None),
}
WOODBURY_EXTRA = {  # data set -> (n_bits, iterations, sampling temperature, random test images)
    "cifar10": (8, None, None, None),
    "imagenet32": (8, None, None, None),
    "imagenet64": (8, None, None, None),
    "lsun-church96": (5, None, 0.875, None),
    "celebahq-64": (5, 600_000, 0.7, 3000),
    "celebahq-128": (5, 300_000, 0.5, 3000),
    "celebahq-256": (5, 300_000, 0.5, 3000),
}
BASELINE_CHANNELS = {"spline": (256, 224), "macow": (384, 296)}  # app. C.1: 32x32, 64x64 images
# Chen et al. 2019, app. E: preset -> (scales, blocks per scale, squeeze first, alpha, flip, crop, n_bits)
RESFLOW_APPENDIX_E = {
    "resflow-mnist": (3, 16, False, 1e-5, False, 0, 8),
    "resflow-cifar10": (3, 16, False, 0.05, True, 0, 8),
    "resflow-imagenet32": (3, 32, False, 0.05, False, 0, 8),
    "resflow-imagenet64": (3, 32, True, 0.05, False, 0, 8),
    "resflow-celeba64": (4, 16, True, 0.05, True, 0, 5),
    "resflow-hybrid-mnist": (3, 16, False, 1e-5, False, 0, 8),
    "resflow-hybrid-svhn": (3, 16, False, None, False, 4, 8),  # same as "density modeling": none for SVHN
    "resflow-hybrid-cifar10": (3, 16, False, None, True, 4, 8),  # mean/std normalisation, no logit
}

FIELDS = {  # column label -> dotted config key
    "batch": "data.batch_size",
    "L": "model.levels",
    "K": "model.steps_per_level",
    "channels": "model.hidden_channels",
    "d_c": "model.woodbury_latent_channel",
    "d_s": "model.woodbury_latent_spatial",
    "d_h": "model.woodbury_latent_height",
    "d_w": "model.woodbury_latent_width",
    "bits": "data.n_bits",
    "iterations": "train.steps",
    "T": "train.sample_temperature",
    "test": "data.folder_test_images",
    "scales": "model.scales",
    "blocks": "model.blocks_per_scale",
    "squeeze1st": "model.squeeze_first",
    "alpha": "model.logit_alpha",
    "flip": "data.flip",
    "crop": "data.crop",
    "polyak": "train.ema_decay",
    "input": lambda c: "mean/std" if getattr(c.model, "logit_alpha", None) is None else "logit",
}


@dataclass
class PaperRow:
    """The paper's values for one preset (``None``: not given by the paper) and where they are from."""

    source: str
    values: dict[str, Any]
    note: str = ""


def paper_row(name: str) -> PaperRow | None:
    """The paper row a preset claims to follow, or ``None`` for presets that name no paper row."""
    if name.endswith("-tiny"):
        return None
    if name in RESFLOW_APPENDIX_E:
        scales, blocks, first, alpha, flip, crop, bits = RESFLOW_APPENDIX_E[name]
        values = {"scales": scales, "blocks": blocks, "squeeze1st": first, "input": "logit", "alpha": alpha,
                  "flip": flip, "crop": crop, "bits": bits, "channels": 512, "polyak": 0.999}
        note = ""
        if name == "resflow-hybrid-cifar10":
            values["input"] = "mean/std"
        if name == "resflow-hybrid-svhn":
            note = "app. E has no SVHN density model to copy alpha from"
        return PaperRow("Chen et al. 2019, app. E", values, note)
    if name == "resflow-toy-checkerboard":
        return PaperRow(
            "Chen et al. 2019, app. D",
            {"blocks": 200},
            "the preset trades depth for 3 minutes on 2 CPU cores",
        )
    for family in (
        "me-woodbury-glow",
        "woodbury-glow",
        "emerging-glow",
        "periodic-glow",
        "glow",
        "spline",
        "macow",
    ):
        if name.startswith(family + "-"):
            data = name[len(family) + 1:]
            if data in WOODBURY_TABLE2:
                return _woodbury_row(family, data)
    return None


def _woodbury_row(family: str, data: str) -> PaperRow:
    batch, levels, steps, channels = WOODBURY_TABLE2[data]
    bits, iterations, temperature, test = WOODBURY_EXTRA[data]
    values: dict[str, Any] = {"batch": batch, "L": levels, "K": steps, "channels": channels, "bits": bits,
                              "iterations": iterations, "T": temperature, "test": test}
    source, note = "Lu & Huang 2020, Table 2", ""
    if data not in ("cifar10", "imagenet32", "imagenet64"):
        source += ", app. D-E, Fig. 6-9 captions"
    if family in BASELINE_CHANNELS:
        values["channels"] = BASELINE_CHANNELS[family][data == "imagenet64"]
        source += ", app. C.1"
    d_c, d_s, me = WOODBURY_TABLE3[data]
    if family == "woodbury-glow":
        values.update({"d_c": d_c, "d_s": d_s})
        source += ", Table 3"
    elif family == "me-woodbury-glow":
        if me is None:
            values.update({"d_c": None, "d_h": None, "d_w": None})
            note = 'Table 3 has "—": the latent dims are an extrapolation'
        else:
            values.update(dict(zip(("d_c", "d_h", "d_w"), me)))
            source += ", Table 3"
    return PaperRow(source, values, note)


def _get(config: Config, dotted: Any) -> Any:
    if callable(dotted):
        return dotted(config)
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key, None)


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return "{" + ",".join(map(str, value)) + "}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) and value >= 10_000 else str(value)


def mismatches(config: Config, row: PaperRow) -> list[str]:
    """The columns where the preset differs from a number the paper gives."""
    return [label for label, want in row.values.items()
            if want is not None and _get(config, FIELDS[label]) != want]


def _cells(values: list[str], width: list[int]) -> str:
    return "  ".join(v.rjust(w) for v, w in zip(values, width))


def paper_table(names: list[str], load) -> str:
    """Each paper preset's values above the paper's row, column by column (``—``: not given)."""
    lines = []
    for name in names:
        row = paper_row(name)
        if row is None:
            continue
        config = load(name)
        labels = list(row.values)
        width = [max(len(label), len(_show(_get(config, FIELDS[label]))), len(_show(row.values[label])))
                 for label in labels]
        differ = mismatches(config, row)
        verdict = "matches" if not differ else "DIFFERS in " + ", ".join(differ)
        size = "" if config.data.image_size is None else f" {config.data.image_size}px"
        lines.append(f"{name}  [{config.data.dataset}{size}]  {verdict}{'; ' + row.note if row.note else ''}")
        lines.append(f"  {'':<8}{_cells(labels, width)}")
        preset_values = [_show(_get(config, FIELDS[label])) for label in labels]
        lines.append(f"  {'preset':<8}{_cells(preset_values, width)}")
        lines.append(
            f"  {'paper':<8}{_cells([_show(row.values[label]) for label in labels], width)}   ({row.source})"
        )
    return "\n".join(lines)
