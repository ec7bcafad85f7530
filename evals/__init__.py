"""Evaluation harness (``geoagent eval``): benchmark readers, metrics, the resumable runner, reports,
comparisons and speed benchmarks (``python -m evals.bench_*``). It only reads predictions: every
mode, the retrieval baselines included, is a graph of ``agent.graphs``.

Nothing else imports this package; it imports the agent.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Dataset",
    "EvalRunSettings",
    "EvalSettings",
    "accuracy",
    "compare_runs",
    "distance_km",
    "load_dataset",
    "run_eval",
    "write_reports",
]

_WHERE = {
    "Dataset": "evals.datasets",
    "load_dataset": "evals.datasets",
    "EvalRunSettings": "evals.settings",
    "EvalSettings": "evals.settings",
    "accuracy": "evals.metrics",
    "distance_km": "evals.metrics",
    "compare_runs": "evals.compare",
    "run_eval": "evals.runner",
    "write_reports": "evals.report",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'evals' has no attribute {name!r}")
