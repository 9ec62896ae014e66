"""``benchmarks/gpu_check.py --device cpu --quick``: the GPU check's dry run runs every section's code
path on the CPU and writes every field of its JSON (issue 28). No test needs a GPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402  (a script beside the tests, not a package)


def _missing(rows: list[dict], fields: tuple[str, ...]) -> list[tuple[int, str]]:
    return [(i, f) for i, row in enumerate(rows) for f in fields if f not in row]


def test_the_dry_run_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--quick", "--out", str(out)], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads((out / "gpu_check.json").read_text())
    env, sections = result["environment"], result["sections"]
    assert [f for f in gpu_check.ENVIRONMENT_FIELDS if f not in env] == []
    assert env["device"] == "cpu" and env["quick"] is True
    assert all(s["status"] == "ok" for s in sections.values()), {k: s["status"] for k, s in sections.items()}

    tests = sections["tests"]
    assert [f for f in gpu_check.TEST_FIELDS if f not in tests] == []
    assert tests["total"] > 20 and tests["passed"] == tests["total"] and tests["failures"] == []

    vs = sections["vs_reference"]
    assert {r["case"] for r in vs["rows"]} == {"glow"}  # normflows is a dev dependency
    assert _missing(vs["rows"], gpu_check.VS_REFERENCE_FIELDS) == []
    assert any("residual-flows" in m for m in vs["missing"])  # no checkout here: said, not faked

    rows = sections["precision_compile"]["rows"]
    assert {(r["preset"], r["variant"]) for r in rows} == {
        (f"{p}-tiny", v) for p in gpu_check.PRECISION_PRESETS for v in ("eager", "bf16", "compiled")}
    assert _missing(rows, gpu_check.PRECISION_FIELDS) == []
    measured = [r for r in rows if r["status"] == "ok"]
    assert {r["preset"] for r in measured} == {"woodbury-glow-cifar10-tiny", "resflow-cifar10-tiny"}
    assert all("speedup_vs_eager" in r and "log_prob_max_diff_nats" in r for r in measured
               if r["variant"] != "eager")
    refused = {(r["preset"], r["variant"]) for r in rows if r["status"] != "ok"}
    assert refused == {("resflow-cifar10-tiny", "bf16")}
    assert all(r["status"].startswith("refused: ") for r in rows if r["status"] != "ok")

    rows = sections["throughput"]["rows"]
    assert [r["preset"] for r in rows] == [f"{p}-tiny" for p in gpu_check.PAPER_PRESETS]
    assert _missing(rows, gpu_check.THROUGHPUT_FIELDS) == []
    assert all(r["hours_for_preset_steps"] > 0 for r in rows)

    for name in ("summary.txt", "log.txt", "vs_reference.json", "precision_compile.json", "throughput.json"):
        assert (out / name).is_file(), name
    assert "QUICK DRY RUN" in (out / "summary.txt").read_text()
