"""Progress for logs that are not a terminal (a cluster job's output file).

tqdm draws its bar only on a terminal; written to a file it would be either silent (the
default) or a flood of carriage returns. There the loop prints one plain line to stdout every
``train.log_every`` steps instead (stderr stays for warnings and errors).
"""
from __future__ import annotations

import sys


def wants_lines(progress: bool | None, stream=None) -> bool:
    """Plain progress lines when the caller left ``progress`` to us and ``stream`` is not a terminal."""
    stream = sys.stderr if stream is None else stream
    return progress is None and not (hasattr(stream, "isatty") and stream.isatty())


def show_progress_line(*args) -> None:
    """Print :func:`progress_line` (``args`` are its arguments) to stdout: with the tqdm bar, the
    only output of the library itself (everything else is a warning or a log record)."""
    print(progress_line(*args), flush=True)


def progress_line(name: str, step: int, total: int, metric: str, value: float, images_per_s: float,
                  seconds_per_step: float) -> str:
    """``glow-mnist-tiny step 170/400 (42%) bpd 4.123, 312 img/s, ETA 1m12s``."""
    eta = max(total - step, 0) * seconds_per_step
    minutes, seconds = divmod(round(eta), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    return (f"{name} step {step}/{total} ({100 * step / total:.0f}%) {metric} {value:.4f}, "
            f"{images_per_s:.0f} img/s, ETA {clock}")
