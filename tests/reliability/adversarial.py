"""Attacks on a run's edges, grouped by the class of promise they test (issue 24), on tiny presets.

    python tests/reliability/adversarial.py            # prints each attack, and per class how many held

Each attack builds what it needs in a temporary folder, does what an adversary would (copy a
checkpoint in from another run, mark a file as written by a newer version, point an output at a
run's own file, feed an image whose metadata changes its pixels, …) and says whether invflow
held: refused or announced it by name and left every input file as it was. ``test_adversarial.py``
runs them all in CI.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from image_folders import random_image_folder  # noqa: E402
from invflow import run_files  # noqa: E402
from invflow.cli import main  # noqa: E402
from invflow.data.folder import read_square_image  # noqa: E402
from invflow.models import load_config  # noqa: E402
from invflow.train import loop  # noqa: E402

TOY = {"model.hidden_channels": 8, "data.batch_size": 16, "data.toy_samples": 64, "train.eval_batches": 1,
       "train.n_samples_grid": 4, "train.checkpoint_every": 2, "train.device": "cpu", "train.steps": 2,
       "train.tensorboard": False}
FOLDER = {"data.dataset": "folder", "data.image_size": 8, "data.batch_size": 4, "data.folder_test_images": 6,
          "model.levels": 2, "model.steps_per_level": 1, "model.hidden_channels": 8, "train.eval_batches": 2,
          "train.n_samples_grid": 4, "train.device": "cpu", "train.steps": 2, "train.tensorboard": False}

ATTACKS: dict[str, list[Callable[[Path], tuple[bool, str]]]] = {}


def attack(cls: str):
    def register(fn):
        ATTACKS.setdefault(cls, []).append(fn)
        return fn
    return register


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in this process; its exit code and everything it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue() + err.getvalue()


def toy_run(root: Path, name: str = "run", steps: int = 2) -> Path:
    run = root / name
    loop.train(load_config("glow-toy-rings", {**TOY, "train.steps": steps}), run, progress=False)
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def refused(code: int, text: str, *needles: str) -> bool:
    return code != 0 and all(n in text for n in needles)


# ------------------------------------------------------------------------------ a run is one identity
@attack("a run is one identity")
def foreign_checkpoint(tmp: Path) -> tuple[bool, str]:
    mine, other = toy_run(tmp, "mine"), toy_run(tmp, "other")
    shutil.copy(other / run_files.LAST_PATH, mine / run_files.LAST_PATH)
    before = snapshot(mine / run_files.CHECKPOINTS)
    code, text = cli("eval", str(mine))
    held = refused(code, text, "belongs to another run") and snapshot(mine / run_files.CHECKPOINTS) == before
    return held, "a checkpoint copied in from another run"


@attack("a run is one identity")
def newer_checkpoint(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp, steps=4)
    last = run / run_files.LAST_PATH
    header, _, payload = last.read_bytes().partition(b"\n")
    magic, _, digest = header.split(b" ")
    last.write_bytes(b" ".join([magic, b"9", digest]) + b"\n" + payload)
    before = snapshot(run / run_files.CHECKPOINTS)
    code, text = cli("train", "glow-toy-rings", "--out", str(run), "--resume",
                     *sets(TOY, **{"train.steps": 6}))
    unchanged = snapshot(run / run_files.CHECKPOINTS) == before
    return refused(code, text, "written by a newer invflow") and unchanged, \
        "a checkpoint of a newer format, with an older one to fall back to"


@attack("a run is one identity")
def damaged_identity(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    (run / run_files.IDENTITY).write_text("{not json")
    code, text = cli("eval", str(run))
    return refused(code, text, "run.json", "cannot be read"), "run.json damaged"


@attack("a run is one identity")
def newer_identity(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    (run / run_files.IDENTITY).write_text(json.dumps({"format": 7, "run_id": "x"}))
    code, text = cli("eval", str(run))
    return refused(code, text, "run.json", "newer invflow"), "run.json from a newer invflow"


@attack("a run is one identity")
def edited_test_split(tmp: Path) -> tuple[bool, str]:
    run, images = folder_run(tmp)
    record = json.loads((run / run_files.HELD_OUT).read_text())
    train_file = next(p.name for p in sorted(images.iterdir()) if p.name not in record["files"])
    record["files"][0] = train_file  # a training image swapped into the held-out list by hand
    (run / run_files.HELD_OUT).write_text(json.dumps(record))
    code, text = cli("eval", str(run))
    held = refused(code, text, "changed since they were recorded", train_file)
    return held, "test_split.json edited by hand"


@attack("a run is one identity")
def deleted_held_out_file(tmp: Path) -> tuple[bool, str]:
    run, images = folder_run(tmp)
    gone = json.loads((run / run_files.HELD_OUT).read_text())["files"][3]
    (images / gone).unlink()
    before = (run / run_files.HELD_OUT).read_bytes()
    code, text = cli("train", "glow-mnist-tiny", "--out", str(run), "--resume", *sets(FOLDER, **{
        "data.data_dir": str(images), "train.steps": 4}))
    return refused(code, text, "missing from", gone) and (run / run_files.HELD_OUT).read_bytes() == before, \
        "a held-out file deleted, then --resume"


@attack("a run is one identity")
def held_out_copied_into_training(tmp: Path) -> tuple[bool, str]:
    run, images = folder_run(tmp)
    held = json.loads((run / run_files.HELD_OUT).read_text())["files"][0]
    shutil.copy(images / held, images / "aaa_copy.png")
    code, text = cli("train", "glow-mnist-tiny", "--out", str(run), "--resume", *sets(FOLDER, **{
        "data.data_dir": str(images), "train.steps": 4}))
    held = refused(code, text, "copies of held-out files", "aaa_copy.png")
    return held, "a held-out image copied among the training images"


# -------------------------------------------------------------------- a number says what it measures
@attack("a number says what it measures")
def eval_names_unit_data_checkpoint(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    code, text = cli("eval", str(run))
    held = code == 0 and "checkpoint:" in text and "data:" in text and "bits" in text and "last.pt" in text
    return held, "eval prints the checkpoint, the data and the unit"


@attack("a number says what it measures")
def train_names_unit_and_data(tmp: Path) -> tuple[bool, str]:
    code, text = cli("train", "glow-toy-rings", "--out", str(tmp / "run"), *sets(TOY))
    held = code == 0 and "measured: bits per point of the rings density" in text and "EMA" in text
    return held, "train's closing figures name their unit, data and weights"


@attack("a number says what it measures")
def compare_refuses_mixed_units(tmp: Path) -> tuple[bool, str]:
    code, text = cli("compare", "glow-toy-rings", "glow-mnist-tiny", "--seeds", "1", "--steps", "2",
                     "--out", str(tmp / "cmp"))
    return refused(code, text, "glow-toy-rings", "glow-mnist-tiny"), "compare across units and data sets"


@attack("a number says what it measures")
def compare_refuses_two_toy_densities(tmp: Path) -> tuple[bool, str]:
    code, text = cli("compare", "glow-toy-rings", "glow-toy-2moons", "--seeds", "1", "--steps", "2",
                     "--out", str(tmp / "cmp"))
    return refused(code, text, "rings", "2moons"), "compare across two toy densities"


# ---------------------------------------------------------------------- output never destroys input
@attack("output never destroys input")
def force_onto_run_config(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    before = snapshot(run)
    code, text = cli("sample", str(run), "-n", "4", "-o", str(run / run_files.CONFIG), "--force")
    return refused(code, text) and snapshot(run) == before, "sample -o RUN/config.yaml --force"


@attack("output never destroys input")
def force_onto_checkpoint(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    before = snapshot(run)
    code, text = cli("sample", str(run), "-n", "4", "-o", str(run / run_files.LAST_PATH), "--force")
    return refused(code, text) and snapshot(run) == before, "sample -o RUN/checkpoints/last.pt --force"


@attack("output never destroys input")
def force_onto_device(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    code, text = cli("sample", str(run), "-n", "4", "-o", "/dev/null", "--force")
    return refused(code, text) and Path("/dev/null").is_char_device(), "sample -o /dev/null --force"


@attack("output never destroys input")
def output_is_a_directory(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    (tmp / "out").mkdir()
    code, text = cli("sample", str(run), "-n", "4", "-o", str(tmp / "out"))
    return (code != 0 and "Traceback" not in text) or (code == 0 and any((tmp / "out").iterdir())), \
        "sample -o DIR"


@attack("output never destroys input")
def force_onto_foreign_file(tmp: Path) -> tuple[bool, str]:
    run = toy_run(tmp)
    notes = tmp / "notes.txt"
    notes.write_text("my notes")
    code, text = cli("sample", str(run), "-n", "4", "-o", str(notes), "--force")
    return refused(code, text) and notes.read_text() == "my notes", "sample -o notes.txt --force"


# ------------------------------------------------------------------- images are read as a viewer shows
@attack("images are read as a viewer shows them")
def exif_orientation(tmp: Path) -> tuple[bool, str]:
    stored = np.zeros((4, 8, 3), dtype=np.uint8)
    stored[:, :4] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to view
    image.save(tmp / "side.png", exif=exif)
    pixels = read_square_image(tmp / "side.png", None)
    upright = np.asarray(Image.fromarray(stored).transpose(Image.Transpose.ROTATE_90)).transpose(2, 0, 1)
    return pixels.shape == (3, 4, 4) and np.array_equal(pixels, upright[:, 2:6, :]), "EXIF orientation 8"


@attack("images are read as a viewer shows them")
def transparent_palette(tmp: Path) -> tuple[bool, str]:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.save(tmp / "p.png", transparency=1)
    try:
        read_square_image(tmp / "p.png", None)
    except ValueError as e:
        return "palette with transparency" in str(e), "a palette PNG with a transparent colour"
    return False, "a palette PNG with a transparent colour"


@attack("images are read as a viewer shows them")
def sixteen_bit_grey(tmp: Path) -> tuple[bool, str]:
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp / "w.png")
    white = bool((read_square_image(tmp / "w.png", None) == 255).all())
    return white, "a 16-bit grey PNG (white stays white)"


@attack("images are read as a viewer shows them")
def semi_transparent_rgba(tmp: Path) -> tuple[bool, str]:
    rgba = np.full((4, 4, 4), 90, dtype=np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp / "a.png")
    try:
        read_square_image(tmp / "a.png", None)
    except ValueError as e:
        return "transparent pixels" in str(e), "a half-transparent RGBA PNG"
    return False, "a half-transparent RGBA PNG"


# ----------------------------------------------------------------------------------------- helpers
def folder_run(tmp: Path) -> tuple[Path, Path]:
    images = random_image_folder(tmp / "images", 40)
    run = tmp / "run"
    loop.train(load_config("glow-mnist-tiny", {**FOLDER, "data.data_dir": str(images)}), run, progress=False)
    return run, images


def sets(base: dict, **more) -> list[str]:
    out: list[str] = []
    for key, value in {**base, **more}.items():
        out += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def run_all() -> dict[str, list[tuple[str, bool, str]]]:
    """Every attack, each in its own temporary folder: ``{class: [(attack, held, what), …]}``."""
    results: dict[str, list[tuple[str, bool, str]]] = {}
    for cls, attacks in ATTACKS.items():
        for fn in attacks:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    held, what = fn(Path(tmp))
                except Exception as e:  # an attack that crashes invflow did not hold
                    first = str(e).splitlines()[0] if str(e) else ""
                    held, what = False, f"raised {type(e).__name__}: {first}"
            results.setdefault(cls, []).append((fn.__name__, held, what))
    return results


def main_script() -> int:
    results = run_all()
    for cls, rows in results.items():
        print(f"{cls}: {sum(h for _, h, _ in rows)} of {len(rows)} held")
        for name, held, what in rows:
            print(f"  {'held' if held else 'FAILED':6s} {name}: {what}")
    return 0 if all(h for rows in results.values() for _, h, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main_script())
