"""The prepared device check: the suite's core, paired speed and memory against both references,
bf16 and ``torch.compile``, and the GPU-hours of the paper presets, in one bounded run.

    python benchmarks/gpu_check.py --device cuda --out DIR --resflow-ref .gpu/residual-flows
    python benchmarks/gpu_check.py --device cpu --quick --out DIR     # the dry run (CI runs it)

Sections, each a subprocess with its own time limit inside ``--budget-s`` (the whole check):

- ``tests``: ``pytest -m device --device DEVICE`` (tests/devices.py): the layer harness in float64
  against brute-force Jacobians, the log-det estimators' unbiasedness, sampling and scoring of every
  family, save/load round trips, tiny presets training, checkpointing and resuming;
- ``vs_reference``: ``vs_reference.py --device DEVICE``: Residual Flow against rtqichen/residual-flows
  (``--resflow-ref``) and Glow against normflows, small and full sizes, batch 64, paired rounds, with
  each step's peak memory; a reference that is not there is recorded as missing, not faked;
- ``precision_compile``: ``precision_compile.py``: bf16 conditioners and ``torch.compile`` against
  eager for a Glow-family and a residual preset (residual flows refuse bf16 and say why);
- ``throughput``: ``train_throughput.py``: images/s of the paper presets on random images of their
  shape, and the hours their ``train.steps`` take at that speed.

``--quick`` runs the same code paths at sizes a 2-core CPU does in a few minutes (tiny presets,
fewer tests and rounds); its figures are a dry run, not measurements. Into ``--out`` go
``gpu_check.json`` (everything), one JSON file per section, ``summary.txt`` (the table) and
``log.txt`` (every section's output). Exit status 0 when every section ran and every test passed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PAPER_PRESETS = ["resflow-cifar10", "woodbury-glow-cifar10", "me-woodbury-glow-imagenet64", "glow-imagenet64"]
PRECISION_PRESETS = ["woodbury-glow-cifar10", "resflow-cifar10"]
# --quick: every family on the device and the estimators (the full check: every device-marked file)
QUICK_TESTS = ["tests/core/test_models_on_device.py", "tests/residual/test_residual_logdet.py"]
SECTION_LIMITS_S = {"tests": 150, "vs_reference": 120, "precision_compile": 240, "throughput": 80}
ENVIRONMENT_FIELDS = ("device", "device_name", "torch", "cuda", "python", "invflow", "commit", "quick")
TEST_FIELDS = ("status", "seconds", "total", "passed", "failed", "errors", "skipped", "failures")
VS_REFERENCE_FIELDS = ("case", "batch", "invflow_s", "reference_s", "speedup", "ratio_min", "ratio_max",
                       "invflow_step_peak_mb", "reference_step_peak_mb", "reference")
PRECISION_FIELDS = ("preset", "variant", "status")
THROUGHPUT_FIELDS = ("preset", "batch", "step_s", "images_per_s", "peak_mb", "train_steps", "steps_source",
                     "hours_for_preset_steps", "hours_per_100k_steps")


class Check:
    """One run of the check: the deadline, the output folder and the log every section writes to."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + args.budget_s
        self.log = (self.out / "log.txt").open("a", buffering=1)
        path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)

    def run(self, name: str, command: list[str]) -> dict[str, Any]:
        """Run one section's command within its limit and the check's deadline; its output goes to
        the log (and to the terminal)."""
        limit = min(SECTION_LIMITS_S[name] * (1 if self.args.device == "cuda" else 4),
                    self.deadline - time.monotonic())
        if limit < 20:
            return {"status": "skipped: the check's time budget was spent", "seconds": 0.0}
        self.log.write(f"\n===== {name}: {' '.join(command)} (limit {limit:.0f} s)\n")
        print(f"== {name} (limit {limit:.0f} s)", flush=True)
        start = time.monotonic()
        try:
            proc = subprocess.run(command, cwd=ROOT, env=self.env, timeout=limit, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            output, status = proc.stdout, "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired as e:
            output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            status = f"timed out after {limit:.0f} s"
        self.log.write(output)
        print("\n".join(output.splitlines()[-15:]), flush=True)
        return {"status": status, "seconds": round(time.monotonic() - start, 1)}


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cuda = args.device == "cuda" and torch.cuda.is_available()
    info: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "invflow": _invflow_version(),
        "commit": _commit(),
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info |= {"capability": f"{props.major}.{props.minor}",
                 "memory_gib": round(props.total_memory / 2**30, 1),
                 "cudnn": torch.backends.cudnn.version(), "driver": _nvidia_smi("driver_version")}
    return info


def _invflow_version() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from invflow.version import __version__

    return __version__


def _commit() -> str | None:
    """The commit checked: INVFLOW_COMMIT (for a copy of the tree whose .git, if any, is not the
    tree's), else git's."""
    if os.environ.get("INVFLOW_COMMIT"):
        return os.environ["INVFLOW_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def device_test_files() -> list[str]:
    """The test files holding device-marked tests: only these are collected, so a module whose
    imports the device machine lacks cannot stop the run."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.device" in p.read_text())


def run_tests(check: Check) -> dict[str, Any]:
    args = check.args
    report = check.out / "tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device",
               "--device", args.device, f"--junitxml={report}",
               *(QUICK_TESTS if args.quick else device_test_files())]
    if args.device == "cuda" and importlib.util.find_spec("xdist"):
        command += ["-n", str(args.test_workers)]
    result = check.run("tests", command)
    result |= {"total": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    if report.is_file():
        result |= junit_summary(report)
        report.unlink()
    if result["status"] == "ok" and result["total"] == 0:
        result["status"] = "failed: no test ran"
    return result


def junit_summary(path: Path) -> dict[str, Any]:
    """Counts and the failing tests (name and first line of the message) from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    failures, counts = [], {"total": 0, "failed": 0, "errors": 0, "skipped": 0}
    for case in root.iter("testcase"):
        counts["total"] += 1
        for kind, key in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            node = case.find(kind)
            if node is not None:
                counts[key] += 1
                if kind != "skipped":
                    message = (node.get("message") or node.text or "").strip().splitlines()
                    first = message[0] if message else kind
                    failures.append(f"{case.get('classname')}::{case.get('name')}: {first}")
    return counts | {"passed": counts["total"] - counts["failed"] - counts["errors"] - counts["skipped"],
                     "failures": failures}


def run_vs_reference(check: Check) -> dict[str, Any]:
    args = check.args
    cases, missing = [], []
    if importlib.util.find_spec("normflows"):
        cases += ["glow"] if args.quick else ["glow", "glow-full"]
    else:
        missing.append("normflows is not installed (pip install normflows==1.7.3): no Glow comparison")
    if args.resflow_ref and (Path(args.resflow_ref) / "resflows" / "resflow.py").is_file():
        cases += ["resflow"] if args.quick else ["resflow", "resflow-full"]
    else:
        missing.append(f"no rtqichen/residual-flows checkout at --resflow-ref {args.resflow_ref}: "
                       "no Residual Flow comparison")
    result: dict[str, Any] = {"missing": missing, "rows": []}
    if not cases:
        return result | {"status": "skipped: no reference is available", "seconds": 0.0}
    batch = 16 if args.quick else 64
    command = [sys.executable, str(HERE / "vs_reference.py"), "--device", args.device, "--cases", *cases,
               "--batch", str(batch), "--full-batch", str(batch), "--rounds", str(12 if args.quick else 16),
               "--warmup", str(1 if args.quick else 3), "--out-dir", str(check.out), "--out", "vs_reference"]
    if args.resflow_ref:
        command += ["--resflow-ref", str(args.resflow_ref)]
    result |= check.run("vs_reference", command)
    return result | {"rows": _rows(check.out / "vs_reference.json")}


def run_precision_compile(check: Check) -> dict[str, Any]:
    args = check.args
    presets = [f"{p}-tiny" for p in PRECISION_PRESETS] if args.quick else PRECISION_PRESETS
    out = check.out / "precision_compile.json"
    command = [sys.executable, str(HERE / "precision_compile.py"), "--device", args.device,
               "--presets", *presets, "--rounds", str(3 if args.quick else 16),
               "--warmup", str(1 if args.quick else 2), "--out", str(out)]
    return check.run("precision_compile", command) | {"rows": _rows(out)}


def run_throughput(check: Check) -> dict[str, Any]:
    args = check.args
    presets = [f"{p}-tiny" for p in PAPER_PRESETS] if args.quick else PAPER_PRESETS
    out = check.out / "throughput.json"
    command = [sys.executable, str(HERE / "train_throughput.py"), "--device", args.device,
               "--presets", *presets, "--steps", str(2 if args.quick else 5), "--out", str(out)]
    return check.run("throughput", command) | {"rows": _rows(out)}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError):
        return []


def summary(result: dict[str, Any]) -> str:
    """The short text table of the whole check."""
    env, sections = result["environment"], result["sections"]
    lines = [f"invflow {env['invflow']} ({env['commit']}) on {env['device']} ({env['device_name']}), "
             f"torch {env['torch']}, CUDA {env['cuda']}{', QUICK DRY RUN' if env['quick'] else ''}"]
    t = sections["tests"]
    lines.append(f"tests: {t['status']}: {t['passed']}/{t['total']} passed, {t['failed']} failed, "
                 f"{t['errors']} errors, {t['skipped']} skipped in {t['seconds']} s")
    lines += [f"  FAIL {f}" for f in t["failures"][:20]]
    v = sections["vs_reference"]
    lines.append(f"vs_reference: {v['status']}" + "".join(f"; missing: {m}" for m in v["missing"]))
    for r in v["rows"]:
        memory = (f", peak {r['invflow_step_peak_mb']:.0f} vs {r['reference_step_peak_mb']:.0f} MB"
                  if "invflow_step_peak_mb" in r else "")
        lines.append(f"  {r['case']:14s} batch {r['batch']:3d}: {r['speedup']:.2f}x [{r['ratio_min']:.2f}, "
                     f"{r['ratio_max']:.2f}] vs {r['reference']} ({r['invflow_s'] * 1e3:.1f} vs "
                     f"{r['reference_s'] * 1e3:.1f} ms){memory}")
    p = sections["precision_compile"]
    lines.append(f"precision_compile: {p['status']}")
    for r in p["rows"]:
        if r["status"] != "ok":
            lines.append(f"  {r['preset']:28s} {r['variant']:9s} {r['status'][:90]}")
        elif "speedup_vs_eager" in r:
            lines.append(f"  {r['preset']:28s} {r['variant']:9s} {r['speedup_vs_eager']:.2f}x "
                         f"[{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] step {r['step_s'] * 1e3:.1f} ms, "
                         f"first step {r['first_step_s']:.1f} s, loss diff {r['loss_diff_vs_eager']:+.1e}")
    h = sections["throughput"]
    lines.append(f"throughput: {h['status']}")
    for r in h["rows"]:
        if r.get("status", "ok") == "ok":
            lines.append(f"  {r['preset']:30s} batch {r['batch']:3d}: {r['images_per_s']:8.1f} images/s, "
                         f"peak {r['peak_mb']:.0f} MB; {r['train_steps']} steps = "
                         f"{r['hours_for_preset_steps']:.1f} h ({r['steps_source']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the same code paths")
    parser.add_argument("--out", required=True, help="folder for the JSON files, summary.txt and log.txt")
    parser.add_argument("--resflow-ref", help="checkout of https://github.com/rtqichen/residual-flows")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the whole check's time limit (default 480 s on cuda, 1800 s on cpu)")
    parser.add_argument("--test-workers", type=int, default=8, help="pytest-xdist workers on cuda")
    parser.add_argument("--sections", nargs="+", choices=list(SECTION_LIMITS_S),
                        default=list(SECTION_LIMITS_S))
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 480.0 if args.device == "cuda" else 1800.0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but this machine has no usable CUDA device", file=sys.stderr)
        return 2
    check = Check(args)
    result: dict[str, Any] = {"environment": environment(args), "sections": {}}
    runners = {"tests": run_tests, "vs_reference": run_vs_reference,
               "precision_compile": run_precision_compile, "throughput": run_throughput}
    for name, runner in runners.items():
        if name in args.sections:
            result["sections"][name] = runner(check)
        else:
            result["sections"][name] = {"status": "not asked for", "seconds": 0.0, "rows": [], "missing": [],
                                        "total": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0,
                                        "failures": []}
        (check.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    table = summary(result)
    (check.out / "summary.txt").write_text(table)
    print(table)
    ok = all(s["status"] == "ok" for s in result["sections"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
