"""The ``invflow`` command line (DESIGN.md section 7).

Errors a user can fix (unknown preset or key, bad value, missing file, bad checkpoint) print
one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from invflow.config import parse_override, presets
from invflow.core.arguments import check_number
from invflow.core.nonfinite import NonFiniteSamples
from invflow.models.registry import load_config
from invflow.train.checkpoint import CheckpointError
from invflow.train.interrupt import TrainingInterrupted
from invflow.train.loop import TrainingDiverged

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


MAX_GRID_SAMPLES = 10_000  # one PNG grid of 100 x 100 tiles


def _sample_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_GRID_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_GRID_SAMPLES} (one PNG grid), got {value}")
    return value


def _temperature(text: str) -> float:
    try:
        return check_number(float(text), "temperature", low=0.0)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("temperature ")) from None


def _positive_minutes(text: str) -> float:
    try:
        value = check_number(float(text), "minutes")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("minutes ")) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _overrides(items: list[str]) -> dict:
    return dict(parse_override(item) for item in items)


def cmd_configs(args: argparse.Namespace) -> int:
    table = presets()
    width = max(map(len, table)) if table else 0
    for name, description in table.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from invflow.train.loop import train

    overrides = _overrides(args.set)
    if args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    if args.device:
        overrides["train.device"] = args.device
    if args.compile:
        overrides["train.compile"] = True
    config = load_config(args.preset, overrides)
    out = args.out or str(Path("runs") / config.name)
    result = train(config, out, resume=args.resume, progress=None)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    print(f"finished {config.name} at step {result.step} in {result.seconds:.0f}s: "
          f"train {result.metric} {result.train_value:.4f}, "
          f"test {result.metric} {result.test_value:.4f} ± {result.test_stderr:.4f}")
    if result.nonfinite:
        print(f"warning: {result.nonfinite} of {result.step} steps were skipped as non-finite "
              "(see metrics.jsonl); consider a lower train.lr or train.grad_clip")
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from invflow.api import load_checkpoint
    from invflow.train.evaluate import evaluate, held_out_batches, load_split, make_objective
    from invflow.train.distributed import select_device
    from invflow.models import is_toy

    model, config = load_checkpoint(args.run, ema=not args.no_ema)
    device = select_device(args.device)
    model.to(device)
    data = None if is_toy(config.data) else load_split(config, args.split, args.data_dir)
    batches = held_out_batches(config, data, args.batches)
    result = evaluate(model, make_objective(config), batches, device, seed=args.seed)
    weights = "raw" if args.no_ema else "EMA"
    print(f"{config.name} ({weights} weights, {args.split} split): {result}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from invflow.api import load_checkpoint
    from invflow.train.sampling import write_samples

    model, config = load_checkpoint(args.run)
    out = Path(args.output) if args.output else Path(args.run if Path(args.run).is_dir() else ".") / "sample.png"
    write_samples(model, config, out, args.n, args.temperature, seed=args.seed)
    iterations = f" ({model.inverse_iterations()} fixed-point iterations over all blocks)" \
        if hasattr(model, "inverse_iterations") else ""
    print(f"wrote {out}{iterations}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from invflow.compare import Budget, CompareSpec, load_spec, run_comparison, write_report

    if args.spec and args.presets:
        raise ValueError("give presets or --spec, not both")
    overrides = _overrides(args.set)
    if args.spec:
        spec = load_spec(args.spec).with_cli(args.seeds, args.steps, args.minutes, overrides)
    else:
        spec = CompareSpec(tuple(args.presets), 3 if args.seeds is None else args.seeds,
                           Budget(args.steps, args.minutes), overrides)
    out = Path(args.out or Path("runs") / f"compare-{spec.name}")
    markers = run_comparison(spec, out, data_dir=args.data_dir)
    paths = write_report(spec, out, markers)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("configs", help="list presets").set_defaults(func=cmd_configs)

    p = sub.add_parser("train", help="train a preset or YAML config")
    p.add_argument("preset", help="preset name (see `invflow configs`) or path to a .yaml file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key")
    p.add_argument("--data-dir", help="directory holding the data files")
    p.add_argument("--out", help="run directory (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device (default auto)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (train.compile=true)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run directory or checkpoint")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--batches", type=_positive_int, default=None, help="evaluate only this many batches")
    p.add_argument("--data-dir", help="directory holding the data files")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="write a PNG of samples from a run directory or checkpoint")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("-n", type=_sample_count, default=64, help=f"number of samples (at most {MAX_GRID_SAMPLES})")
    p.add_argument("--temperature", type=_temperature, default=1.0, help="standard deviation of the latents (>= 0)")
    p.add_argument("-o", "--output", help="PNG path (default RUN/sample.png)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("compare", help="train presets x seeds under one budget; table with error bars")
    p.add_argument("presets", nargs="*", metavar="PRESET", help="presets or .yaml configs to compare")
    p.add_argument("--spec", help="a shipped comparison spec (e.g. woodbury-paper-tiny) or a spec .yaml")
    p.add_argument("--seeds", type=_positive_int, default=None, help="seeds per preset (default 3, or the spec's)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, default=None, help="training steps of every run")
    budget.add_argument("--minutes", type=_positive_minutes, default=None, help="wall-clock minutes of every run")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key of every preset")
    p.add_argument("--out", help="output folder (default runs/compare-<spec>); rerun to resume")
    p.add_argument("--data-dir", help="directory holding the data files")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"invflow: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingDiverged, NonFiniteSamples) as err:
        print(f"invflow: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(f"invflow: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("invflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
