"""``invflow compare``: presets × seeds under one budget, with error bars, cost and a test curve."""
from invflow.compare.report import write_report
from invflow.compare.runner import plan_runs, run_comparison
from invflow.compare.spec import Budget, CompareSpec, load_spec, spec_names

__all__ = ["Budget", "CompareSpec", "load_spec", "plan_runs", "run_comparison", "spec_names", "write_report"]
