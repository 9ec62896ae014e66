"""The papers' own numbers for the presets that name a paper, for ``invflow configs --paper``.

Written from the supplementary material in ``../shared/seeds/``: Lu & Huang 2020 (Woodbury
Transformations), Table 2 (mini-batch, levels L, steps K, coupling channels), Table 3 (latent
dims per level; "—" for ME-Woodbury on LSUN and CelebA-HQ), app. C.1 (spline/MaCow channels),
app. D (CelebA-HQ: 600,000 / 300,000 iterations, a random 3,000-image test set) and the figure
captions (sampling temperatures), Table 4 (CelebA-HQ test bits/dim); Chen et al. 2019 (Residual
Flows), app. E (architectures, alpha, preprocessing, Adam "with otherwise default hyperparameters",
Polyak 0.999) and app. D (checkerboard: 200 blocks, brute-force log-det, Fig. 12's bits).
``None`` means the paper does not give the number. The test suite holds its own copy.

Where a preset departs from a number the paper gives, the row says why (``PaperRow.departures``);
where the paper leaves a number out that the model needs, the row says the preset extrapolates
(``PaperRow.extrapolated``). ``DEPARTURES`` lists the places where the code departs from the
papers' text beyond preset values; ``configs --paper`` prints them after the rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
# Table 4: CelebA-HQ test bits/dim, data set -> {family: bits}.
WOODBURY_TABLE4 = {
    "celebahq-64": {"glow": 1.27, "woodbury-glow": 1.23},
    "celebahq-128": {"glow": 1.09, "woodbury-glow": 1.04},
    "celebahq-256": {"glow": 0.93, "woodbury-glow": 0.93},
}
# Glow's own sampling temperature where a figure shows Glow samples (Figures 1 and 2: 0.7).
GLOW_TEMPERATURE = {"celebahq-128": 0.7, "celebahq-256": 0.7}
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

RESFLOW_OPTIMIZER_DEPARTURES = {
    "warm-up": "1000 steps of linear warm-up, as the paper's code (train_img.py --warmup-iters 1000), "
               "not in the text",
    "clip": "chosen: gradient norm clipped at 20 (the paper's code clips at 1, the text not at all)",
}
# Fig. 12: preset -> (norm order, bits)
CHECKERBOARD_FIG12 = {
    "resflow-toy-checkerboard-paper-p2": ("2", 5.13),
    "resflow-toy-checkerboard-paper-pinf": ("inf", 5.09),
}

# Where the code departs from the papers' text beyond a preset's values, and why.
DEPARTURES = (
    "Learned norm orders (Chen et al. 2019, app. D): the text writes 1 + tanh(s)/2 and says this bounds "
    "the orders to (1.5, 2.5); 1 + tanh(s)/2 lies in (0.5, 1.5), so invflow uses 2 + tanh(s)/2, the range "
    "the text states (residual/lipschitz.py, LearnedNormOrder).",
    "Averaged (Polyak) weights (app. E): their spectral norms come from power-iteration vectors refined "
    "for the averaged weights before every evaluation, sample grid and checkpoint (train/ema.py, "
    "averaged_model), not from the live weights' vectors, which give only a lower bound for them.",
)

FIELDS = {  # column label -> dotted config key
    "batch": "data.batch_size",
    "L": "model.levels",
    "K": "model.steps_per_level",
    "channels": "model.hidden_channels",
    "d_c": "model.mixing.latent_channel",
    "d_s": "model.mixing.latent_spatial",
    "d_h": "model.mixing.latent_height",
    "d_w": "model.mixing.latent_width",
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
    "warm-up": "train.warmup_steps",
    "clip": lambda c: "off" if c.train.grad_clip is None else c.train.grad_clip,
    "logdet": "model.logdet",
    "norm p": lambda c: {"f": "inf", "2": "2"}.get(str(c.model.norm_orders), str(c.model.norm_orders)),
    "input": lambda c: "mean/std" if getattr(c.model, "logit_alpha", None) is None else "logit",
}


@dataclass
class PaperRow:
    """The paper's values for one preset (``None``: not given by the paper) and where they are from."""

    source: str
    values: dict[str, Any]
    note: str = ""
    #: column -> why the preset departs from the paper's number there (chosen, with its reason)
    departures: dict[str, str] = field(default_factory=dict)
    #: columns the paper leaves out ("—") that the preset had to fill in
    extrapolated: tuple[str, ...] = ()
    #: what the paper reports for this model (a result, not a setting)
    reported: str = ""


def paper_row(name: str) -> PaperRow | None:
    """The paper row a preset claims to follow, or ``None`` for presets that name no paper row."""
    if name.endswith("-tiny"):
        return None
    if name in RESFLOW_APPENDIX_E:
        scales, blocks, first, alpha, flip, crop, bits = RESFLOW_APPENDIX_E[name]
        values = {"scales": scales, "blocks": blocks, "squeeze1st": first, "input": "logit", "alpha": alpha,
                  "flip": flip, "crop": crop, "bits": bits, "channels": 512, "polyak": 0.999,
                  "warm-up": 0, "clip": "off"}
        note = ""
        if name == "resflow-hybrid-cifar10":
            values["input"] = "mean/std"
        if name == "resflow-hybrid-svhn":
            note = "app. E has no SVHN density model to copy alpha from"
        return PaperRow("Chen et al. 2019, app. E", values, note, departures=RESFLOW_OPTIMIZER_DEPARTURES)
    if name == "resflow-toy-checkerboard":
        return PaperRow(
            "Chen et al. 2019, app. D",
            {"blocks": 200, "logdet": "exact", "norm p": "inf"},
            departures={"blocks": "16 blocks for 3 minutes on 2 CPU cores; the -paper-pinf preset has 200"},
        )
    if name in CHECKERBOARD_FIG12:
        p, bits = CHECKERBOARD_FIG12[name]
        return PaperRow(
            "Chen et al. 2019, app. D, Fig. 12",
            {"blocks": 200, "logdet": "exact", "norm p": p, "iterations": None},
            "the rest from the paper's train_toy.py defaults; 10,000 of its 50,000 iterations",
            reported=f"Fig. 12: {bits} bits on the checkerboard (p = {p})",
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
    source, note, extrapolated = "Lu & Huang 2020, Table 2", "", ()
    if family == "glow" and data in WOODBURY_TABLE4:
        values["T"] = GLOW_TEMPERATURE.get(data)  # the Woodbury-Glow figures' temperatures are not Glow's
        source += ", app. D, Fig. 1-2 captions"
    elif data not in ("cifar10", "imagenet32", "imagenet64"):
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
            note = 'Table 3 has "—" for ME-Woodbury here: the latent dims continue the Woodbury row'
            extrapolated = ("d_c", "d_h", "d_w")
        else:
            values.update(dict(zip(("d_c", "d_h", "d_w"), me)))
            source += ", Table 3"
    reported = ""
    if family in WOODBURY_TABLE4.get(data, {}):
        reported = f"Table 4: {WOODBURY_TABLE4[data][family]} bits/dim on the CelebA-HQ test set"
        source += ", Table 4"
    return PaperRow(source, values, note, extrapolated=extrapolated, reported=reported)


def _get(config: Config, dotted: Any) -> Any:
    if callable(dotted):
        return dotted(config)
    value: Any = config
    for key in dotted.split("."):  # section.key, or section.key.option of a nested choice
        value = getattr(value, key, None)
    return value


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


def verdict(differ: list[str], row: PaperRow) -> str:
    """For the columns ``differ`` where a preset differs from ``row``: ``matches``; ``extrapolated``
    where the paper has no number; ``departs`` where the preset chose otherwise for a stated
    reason; ``DIFFERS`` where it differs without one (a defect)."""
    unexplained = [label for label in differ if label not in row.departures]
    if unexplained:
        return "DIFFERS in " + ", ".join(unexplained)
    parts = []
    if differ:
        parts.append("departs in " + ", ".join(differ) + " (below)")
    if row.extrapolated:
        parts.append("extrapolated: " + ", ".join(row.extrapolated))
    return "; ".join(parts) if parts else "matches"


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
        size = "" if config.data.image_size is None else f" {config.data.image_size}px"
        differ = mismatches(config, row)
        lines.append(f"{name}  [{config.data.dataset}{size}]  {verdict(differ, row)}"
                     f"{'; ' + row.note if row.note else ''}")
        lines.append(f"  {'':<8}{_cells(labels, width)}")
        preset_values = [_show(_get(config, FIELDS[label])) for label in labels]
        lines.append(f"  {'preset':<8}{_cells(preset_values, width)}")
        lines.append(
            f"  {'paper':<8}{_cells([_show(row.values[label]) for label in labels], width)}   ({row.source})"
        )
        for label in differ:
            if label in row.departures:
                lines.append(f"  departs in {label}: {row.departures[label]}")
        if row.reported:
            lines.append(f"  reported: {row.reported}")
    lines += ["", "Where the code departs from the papers' text:"]
    lines += [f"- {item}" for item in DEPARTURES]
    return "\n".join(lines)
