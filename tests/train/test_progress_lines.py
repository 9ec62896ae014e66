"""A training whose output goes to a file (a cluster job) prints a progress line every
``train.log_every`` steps with step, loss, images/s and ETA (issue 12)."""
import io
import re
import subprocess
import sys

from invflow.train.progress import progress_line, wants_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_only_off_a_terminal_and_only_when_not_chosen() -> None:
    assert wants_lines(None, io.StringIO()) and not wants_lines(None, Terminal())
    assert not wants_lines(False, io.StringIO()) and not wants_lines(True, io.StringIO())


def test_line_format() -> None:
    assert progress_line("m", 170, 400, "bpd", 4.1234, 312.4, 0.5) == \
        "m step 170/400 (42%) bpd 4.1234, 312 img/s, ETA 1m55s"
    assert progress_line("m", 1, 10_001, "bits", 5.0, 10.0, 1.0).endswith("ETA 2h46m")


def test_training_into_a_log_file_prints_progress_lines(tmp_path) -> None:
    log = tmp_path / "job.log"
    with log.open("w") as out:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "invflow",
                "train",
                "glow-toy-rings",
                "--out",
                str(tmp_path / "run"),
                "--set",
                "train.steps=6",
                "--set",
                "train.log_every=2",
                "--set",
                "model.steps_per_level=1",
                "--set",
                "model.hidden_channels=4",
                "--set",
                "data.toy_samples=64",
                "--set",
                "data.batch_size=8",
                "--set",
                "train.eval_batches=1",
                "--set",
                "train.n_samples_grid=4",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    steps = re.findall(r"glow-toy-rings step (\d+)/6 \(\d+%\) bits [\d.]+, \d+ img/s, ETA \d+m\d\ds", text)
    assert steps == ["2", "4", "6"], text
