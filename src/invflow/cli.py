"""invflow: train, evaluate, sample and inspect invertible generative flows on images.

Errors a user can fix (unknown preset or key, bad value, missing file, bad checkpoint) print
one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import textwrap
import warnings
from pathlib import Path

import torch

from invflow.config import MAX_GRID_SAMPLES, one_line, parse_override, presets
from invflow.core.arguments import check_number
from invflow.core.nonfinite import NonFiniteSamples
from invflow.models.registry import load_config
from invflow.storage import DiskFullError
from invflow.train.checkpoint import CheckpointError
from invflow.train.interrupt import TrainingInterrupted
from invflow.train.loop import TrainingDiverged

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a Unix tool killed by a closed pipe returns


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _new_output(path: Path, force: bool, what: str = "the figure") -> Path:
    """``path`` ready to be written: a ``.png`` path (every figure is a PNG), new or an existing
    PNG image, which only ``--force`` replaces. Never a directory, a device or another kind of file
    (a run's checkpoint or config), whatever ``--force`` says."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"-o {path}: invflow writes PNG images; give a path ending in .png")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        kind = "a directory" if path.is_dir() else "a link" if path.is_symlink() else "not a regular file"
        raise ValueError(f"-o {path} is {kind}; give the path of a new .png file")
    if path.exists():
        with path.open("rb") as f:
            if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise ValueError(f"{path} exists and is not a PNG image; invflow replaces only PNG figures, "
                                 "even with --force")
        if not force:
            raise ValueError(f"{path} exists; pass --force to overwrite it or -o to write elsewhere")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a parent that is a file, or no permission
        raise ValueError(f"cannot write {what} to {path}: {err.strerror}: {err.filename}") from None
    return path


def _default_output(run: str, name: str) -> Path:
    """``RUN/name`` for a run directory, ``name`` beside a checkpoint file."""
    where = Path(run)
    return (where if where.is_dir() else where.parent) / name


def _overrides(items: list[str]) -> dict:
    return dict(parse_override(item) for item in items)


def cmd_configs(args: argparse.Namespace) -> int:
    if args.paper:
        from invflow.data.paper_tables import paper_table

        print(paper_table(sorted(presets()), load_config))
        return 0
    table = presets()
    width = max(map(len, table)) if table else 0
    for name, description in table.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from invflow.data.splits import describe_measure
    from invflow.train.evaluate import format_estimate
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
          f"test {result.metric} {format_estimate(result.test_value, result.test_stderr)} "
          f"(best test {result.best_test_value:.4f} at step {result.best_test_step})")
    print(f"measured: {describe_measure(config)}")
    if result.nonfinite:
        print(f"warning: {result.nonfinite} of {result.step} steps were skipped as non-finite "
              "(see metrics.jsonl); consider a lower train.lr or train.grad_clip")
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from invflow.api import evaluate

    evaluation = evaluate(args.run, args.split, data_dir=args.data_dir, batches=args.batches,
                          ema=not args.no_ema, device=args.device, seed=args.seed)
    for line in evaluation.lines():
        print(line)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from invflow.api import load_model
    from invflow.train.grid_contexts import grid_contexts
    from invflow.train.sampling import write_samples

    loaded = load_model(args.run)
    print(f"checkpoint: {loaded.describe()}")
    model, config = loaded.model, loaded.config
    out = _new_output(
        Path(args.output) if args.output else _default_output(args.run, "sample.png"), args.force, "samples"
    )
    temperature = config.train.sample_temperature if args.temperature is None else args.temperature
    contexts = grid_contexts(model, args.n, args.class_index, args.classes == "all", args.context)
    write_samples(model, config, out, args.n, temperature, seed=args.seed, contexts=contexts)
    counts = model.inverse_iteration_counts()
    iterations = f" ({sum(counts)} fixed-point iterations over all blocks)" if counts else ""
    print(f"wrote {out} (temperature {temperature:g}){iterations}")
    return 0


def _model_examples_output(args: argparse.Namespace, n: int, name: str, class_index: int | None = None):
    """The run's model on ``--device``, its first ``n`` held-out examples (of ``class_index`` only,
    if given) with their labels or contexts, and the output path, checked before any work is done."""
    from invflow.api import load_model
    from invflow.latent import held_out_examples
    from invflow.train.distributed import select_device
    from invflow.train.grid_contexts import check_class_index

    loaded = load_model(args.run, ema=not args.no_ema)
    print(f"checkpoint: {loaded.describe()}")
    model, config = loaded.model, loaded.config
    out = _new_output(Path(args.output) if args.output else _default_output(args.run, name), args.force)
    device = select_device(args.device)
    if class_index is not None:
        spec = model.context_spec
        if spec is None or not spec.is_class:
            raise ValueError("--class and --labels need a class-conditional model")
        check_class_index(spec, class_index)
    from invflow.data.splits import run_held_out_set

    held = run_held_out_set(config, loaded.run_root, args.data_dir)
    x, context = held_out_examples(config, n, args.data_dir, args.split, class_index, held)
    return model.to(device), config, (x.to(device), context.to(device)), out


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from invflow.latent import reconstruct, write_reconstruction
    from invflow.latent.codec import iterations_note, scale_note

    model, config, (x, context), out = _model_examples_output(args, args.n, "reconstruct.png")
    result = reconstruct(model, x, context)
    write_reconstruction(result, out, title=config.name)
    print(f"{config.name}: {x.shape[0]} {args.split} examples encoded and decoded, max |x - f^-1(f(x))| = "
          f"{result.max_error:.3g}{scale_note(config)}{iterations_note(model, result.iterations)}")
    print(f"wrote {out} (originals left, reconstructions right)")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from invflow.latent import interpolate, write_interpolation
    from invflow.latent.codec import iterations_note

    labels = _label_pair(args.labels)
    if args.pairs * args.steps > MAX_GRID_SAMPLES:
        raise ValueError(f"--pairs {args.pairs} x --steps {args.steps} = {args.pairs * args.steps} images, "
                         f"more than one figure shows ({MAX_GRID_SAMPLES}); ask for fewer")
    count = args.pairs if labels else 2 * args.pairs
    model, config, (x, c), out = _model_examples_output(args, count, "interpolate.png",
                                                        labels[0] if labels else args.class_index)
    if labels:  # each example's latent under its own label, decoded under label a turning into b
        a, b = (torch.full_like(c, k) for k in labels)
        result = interpolate(model, x, x, args.steps, c, c, decode_contexts=(a, b))
        what = (f"{x.shape[0]} {args.split} example(s) of class {labels[0]} decoded from label {labels[0]} "
                f"to {labels[1]}")
    else:
        if x.shape[0] < 2:
            raise ValueError(f"the {args.split} split has {x.shape[0]} example(s); "
                             "an interpolation needs two")
        pairs = x.shape[0] // 2
        result = interpolate(model, x[:pairs], x[pairs:2 * pairs], args.steps, c[:pairs], c[pairs:2 * pairs])
        what = f"{pairs} pair(s) of {args.split} examples"
    write_interpolation(result, out, title=config.name)
    print(f"{config.name}: {what}, {args.steps} points per pair{iterations_note(model, result.iterations)}")
    print(f"wrote {out} (one row per pair, from the first example to the second)")
    return 0


def _label_pair(text: str | None) -> tuple[int, int] | None:
    """``--labels A,B`` as two integers, or a one-line error."""
    if text is None:
        return None
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--labels must be two class labels A,B, got {text!r}") from None
    return a, b


def cmd_plot(args: argparse.Namespace) -> int:
    from invflow.train.metrics import read_run_metrics
    from invflow.viz.curves import plot_curves

    runs = {Path(r): read_run_metrics(Path(r)) for r in args.runs}
    default = _default_output(args.runs[0], "curves.png") if len(args.runs) == 1 else Path("curves.png")
    out = plot_curves(runs, _new_output(Path(args.output) if args.output else default, args.force))
    print(f"wrote {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from invflow.info import environment_rows, format_rows
    from invflow.layers import conv_conditioner_kernels

    built = conv_conditioner_kernels.kernels() is not None if args.build_kernels else None
    print(format_rows(environment_rows()))
    if built is False:
        why = conv_conditioner_kernels.failure() or f"{conv_conditioner_kernels.ENV_SWITCH}=0"
        print(f"invflow: error: the CPU conditioner kernels were not built ({why})", file=sys.stderr)
        return 1
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
    previous = signal.signal(signal.SIGTERM, _raise_terminated)  # unwind so that the stopped run is named
    try:
        markers = run_comparison(
            spec, out, data_dir=args.data_dir, retrain_damaged=not args.no_retrain_damaged
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    paths = write_report(spec, out, markers)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (where it has one) and keeps the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub, name: str, summary: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    text = f"{summary}.\n\n{textwrap.fill(description, width=88)}"
    return sub.add_parser(name, help=summary, description=text, epilog=epilog,
                          formatter_class=HelpFormatter)


def _model_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "run", metavar="RUN", help="run directory (its newest good checkpoint) or a checkpoint file"
    )
    p.add_argument("--split", default="test", choices=["train", "test"], help=f"which split {what} come from")
    p.add_argument("--data-dir", help="directory holding the data files (default: the run's data.data_dir, "
                                      "then the cache)")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights instead of the EMA (default: EMA)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")


def _output_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("-o", "--output", metavar="PNG", help=f"where to write the figure (default: {default})")
    p.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists (default: refuse)"
    )


def _add_configs(sub) -> None:
    """``invflow configs``."""
    p = _command(sub, "configs", "list the shipped presets with one-line descriptions",
                 "Any preset name can be passed to `invflow train`; so can a YAML file of your own, whose "
                 "keys take their default values where it leaves them out. --paper prints every preset that "
                 "names a paper above the paper's own row (Lu & Huang 2020 Tables 2-3, app. C-D; Chen et al. "
                 "2019 app. D-E) and says where they differ.",
                 ["invflow configs", "invflow configs | grep woodbury", "invflow configs --paper"])
    p.add_argument("--paper", action="store_true",
                   help="each preset that names a paper above the paper's row (default: the plain list)")
    p.set_defaults(func=cmd_configs)


def _add_train(sub) -> None:
    """``invflow train``."""
    p = _command(sub, "train", "train a preset or YAML config",
                 "Writes a run directory: config.yaml, metrics.jsonl, checkpoints/, samples/ and tb/ "
                 "(TensorBoard event files). Under torchrun it trains with DistributedDataParallel.",
                 ["invflow train glow-mnist-tiny --data-dir data/mnist",
                  "invflow train resflow-toy-checkerboard --set train.steps=500 --out runs/cb",
                  "invflow train glow-mnist-tiny --out runs/g --resume",
                  "torchrun --standalone --nproc_per_node 2 -m invflow train glow-mnist-tiny"])
    p.add_argument("preset", help="preset name (see `invflow configs`) or path to a .yaml file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, value read as YAML; repeatable (default: none)")
    p.add_argument(
        "--data-dir", help="directory holding the data files (default: data.data_dir, then the cache)"
    )
    p.add_argument("--out", help="run directory (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device (default: auto)")
    p.add_argument(
        "--compile", action="store_true", help="train through torch.compile (default: train.compile)"
    )
    p.set_defaults(func=cmd_train)


def _add_eval(sub) -> None:
    """``invflow eval``."""
    p = _command(
        sub,
        "eval",
        "evaluate a run directory or checkpoint",
        "Prints the mean bits/dim (bits per sample for 2D data) with its standard error, "
        "the estimator's standard error for residual flows and the accuracy of hybrid models.",
        [
            "invflow eval runs/glow-mnist-tiny",
            "invflow eval runs/resflow-mnist-tiny/checkpoints/last.pt --batches 10 --no-ema",
        ],
    )
    p.add_argument(
        "run", metavar="RUN", help="run directory (its newest good checkpoint) or a checkpoint file"
    )
    p.add_argument("--split", default="test", choices=["train", "test"], help="the split to evaluate")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights instead of the EMA (default: EMA)"
    )
    p.add_argument("--batches", type=_positive_int, default=None, metavar="N",
                   help="evaluate only the first N batches (default: the whole split)")
    p.add_argument("--data-dir", help="directory holding the data files (default: the run's data.data_dir, "
                                      "then the cache)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise")
    p.set_defaults(func=cmd_eval)


def _add_sample(sub) -> None:
    """``invflow sample``."""
    p = _command(sub, "sample", "write a PNG of samples from a run directory or checkpoint",
                 "Images are shown at the data's bit depth; 2D models get a density plot beside a "
                 "histogram of samples. Residual flows report their fixed-point iterations.",
                 ["invflow sample runs/glow-mnist-tiny", "invflow sample runs/glow-mnist-tiny -n 36 "
                  "--temperature 0.7 -o t07.png --force",
                  "invflow sample runs/glow-mnist-cond-tiny --class 3",
                  'invflow sample runs/glow-toy-2moons-rotated --context "0.0,1.0"'])
    p.add_argument(
        "run", metavar="RUN", help="run directory (its newest good checkpoint) or a checkpoint file"
    )
    p.add_argument(
        "-n", type=_sample_count, default=64, help=f"number of samples (at most {MAX_GRID_SAMPLES})"
    )
    p.add_argument(
        "--temperature",
        type=_temperature,
        default=None,
        help="standard deviation of the latents (>= 0); default: the preset's train.sample_temperature "
        "(from the paper's figure captions)",
    )
    p.add_argument("-o", "--output", metavar="PNG", help="PNG path (default: RUN/sample.png)")
    p.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists (default: refuse)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the latent draws")
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                   help="class-conditional models: a grid of class K only (default: --classes all)")
    p.add_argument("--classes", choices=["all"], default=None,
                   help="class-conditional models: one labelled row per class (the default for them)")
    p.add_argument("--context", metavar="V1,V2,...", default=None,
                   help='models conditioned on vectors: the context, e.g. "0.5,1.0" (default: none; a 2D '
                   "toy then shows 4 contexts drawn from its data)")
    p.set_defaults(func=cmd_sample)


def _add_reconstruct(sub) -> None:
    """``invflow reconstruct``."""
    p = _command(
        sub,
        "reconstruct",
        "encode held-out examples and decode them again",
        "Writes the originals beside their reconstructions f^-1(f(x)) and prints the largest "
        "pixel error: how exactly the trained flow inverts. Images are taken at the centres of "
        "their quantization bins. Residual flows report their fixed-point iterations.",
        [
            "invflow reconstruct runs/glow-mnist-tiny",
            "invflow reconstruct runs/resflow-mnist-tiny -n 8 -o r.png",
        ],
    )
    _model_options(p, "the examples")
    p.add_argument("-n", type=_positive_int, default=16, help="number of examples")
    _output_options(p, "RUN/reconstruct.png")
    p.set_defaults(func=cmd_reconstruct)


def _add_interpolate(sub) -> None:
    """``invflow interpolate``."""
    p = _command(
        sub,
        "interpolate",
        "walk in latent space between pairs of held-out examples",
        "Row i decodes (1 - t) f(a_i) + t f(b_i) for evenly spaced t from 0 to 1, where a_i and "
        "b_i are examples i and pairs + i of the split (the Glow paper's interpolation figure). "
        "Residual flows report their fixed-point iterations.",
        [
            "invflow interpolate runs/glow-mnist-tiny",
            "invflow interpolate runs/glow-mnist-tiny --pairs 8 --steps 12 -o walk.png",
            "invflow interpolate runs/glow-mnist-cond-tiny --labels 3,8",
        ],
    )
    _model_options(p, "the end points")
    p.add_argument("--pairs", type=_positive_int, default=4, help="number of pairs (rows)")
    p.add_argument("--steps", type=_positive_int, default=8, help="points per pair, both ends included")
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                   help="class-conditional models: pairs of examples of class K (default: any class)")
    p.add_argument("--labels", metavar="A,B", default=None,
                   help="class-conditional models: examples of class A, each decoded under a label turning "
                   "from A into B (default: none)")
    _output_options(p, "RUN/interpolate.png")
    p.set_defaults(func=cmd_interpolate)


def _add_plot(sub) -> None:
    """``invflow plot``."""
    p = _command(
        sub,
        "plot",
        "plot training and test curves of one or several runs",
        "Reads each run's metrics.jsonl: the training metric per logged step as a thin line, the "
        "test metric as markers with its standard error as a band, one colour per run. No server needed.",
        ["invflow plot runs/glow-mnist-tiny", "invflow plot runs/a runs/b -o curves.png"],
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    _output_options(p, "RUN/curves.png for one run, ./curves.png for several")
    p.set_defaults(func=cmd_plot)


def _add_compare(sub) -> None:
    """``invflow compare``."""
    p = _command(sub, "compare", "train presets x seeds under one budget; table with error bars",
                 "Rerunning the same command resumes: finished runs are skipped, unfinished ones continue.",
                 ["invflow compare --spec woodbury-paper-tiny --data-dir data/mnist",
                  "invflow compare glow-toy-rings resflow-toy-rings --seeds 3 --steps 500"])
    p.add_argument("presets", nargs="*", metavar="PRESET", help="presets or .yaml configs to compare")
    p.add_argument("--spec", help="a shipped comparison spec (e.g. woodbury-paper-tiny) or a spec .yaml "
                                     "(default: none, compare the PRESETs given)")
    p.add_argument(
        "--seeds", type=_positive_int, default=None, help="seeds per preset (default: 3, or the spec's)"
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, default=None,
                        help="training steps of every run (default: the spec's)")
    budget.add_argument("--minutes", type=_positive_minutes, default=None,
                        help="wall-clock minutes of every run (default: the spec's)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key of every preset (default: none)")
    p.add_argument("--out", help="output folder (default: runs/compare-<spec>); rerun to resume")
    p.add_argument(
        "--data-dir", help="directory holding the data files (default: data.data_dir, then the cache)"
    )
    p.add_argument(
        "--no-retrain-damaged",
        action="store_true",
        help="stop at a run whose checkpoints are all unreadable instead of moving it to OUT/damaged "
        "and training it again (default: move and retrain)",
    )
    p.set_defaults(func=cmd_compare)


def _add_info(sub) -> None:
    """``invflow info``."""
    p = _command(sub, "info", "print versions, devices, threads and data locations for a bug report",
             "torch and CUDA versions, the GPUs visible, whether NCCL and gloo are available, thread "
             "counts, the data cache (default ~/.cache/invflow, moved by $INVFLOW_CACHE), whether the "
             "native CPU kernels of Glow's conditioner are built, and the versions of the libraries "
             "invflow uses.",
             ["invflow info", "invflow info > environment.txt", "invflow info --build-kernels"])
    p.add_argument("--build-kernels", action="store_true",
                   help="build the native CPU kernels now (else on first use; about 20 s, needs a C++ "
                        "compiler) and fail if they cannot be built")
    p.set_defaults(func=cmd_info)


def build_parser() -> argparse.ArgumentParser:
    from invflow.version import __version__

    parser = argparse.ArgumentParser(
        prog="invflow",
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
        epilog="examples:\n  invflow configs\n  invflow train glow-mnist-tiny\n"
        "  invflow sample runs/glow-mnist-tiny\n\n"
        "`invflow COMMAND --help` shows a command's options and their defaults.",
    )
    parser.add_argument(
        "--version", action="version", version=f"invflow {__version__} (torch {torch.__version__})"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_configs(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_sample(sub)
    _add_reconstruct(sub)
    _add_interpolate(sub)
    _add_plot(sub)
    _add_compare(sub)
    _add_info(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, so that the comparison can say which run it stopped."""

    exit_code = 128 + signal.SIGTERM

    def __str__(self) -> str:
        return "terminated"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each on stderr (``invflow: warning: …``), without source lines."""
    print(f"invflow: warning: {message}", file=sys.stderr if file is None else file)


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``invflow configs | head``): stop without a traceback.
    Standard output is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


class _ShowLog(logging.Handler):
    """The library's log records as the CLI shows them: notices (INFO) as plain lines on stdout,
    warnings and worse on stderr after ``invflow:``."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            print(f"invflow: {record.getMessage()}", file=sys.stderr, flush=True)
        else:
            print(record.getMessage(), flush=True)


@contextlib.contextmanager
def _showing_library_log():
    """invflow's loggers reach the terminal while a command runs (the library itself only logs);
    the caller's logging set-up is restored after."""
    logger = logging.getLogger("invflow")
    handler, level, propagate = _ShowLog(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(), _showing_library_log():
        # invflow's own warnings, deprecations included (Python hides those outside __main__), reach
        # stderr once per place that raises them; the caller's filters are restored after
        warnings.filterwarnings("default", module=r"invflow(\.|$)")
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except DiskFullError as err:
        print(f"invflow: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"invflow: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingDiverged, NonFiniteSamples) as err:
        print(f"invflow: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(f"invflow: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"invflow: {err or 'interrupted'}", file=sys.stderr)
        return getattr(err, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
