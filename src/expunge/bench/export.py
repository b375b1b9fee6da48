"""Export a bench's unlearning jobs to MLflow (optional: ``pip install mlflow``; imported only when used).

Each finished unlearn job becomes one MLflow run in the experiment ``expunge-bench-<name>`` (or the one named):
parameters setup, scenario, method, seed and the method's arguments; its metrics; tags ``expunge.job_key`` and
``expunge.version``. Jobs already exported to that experiment (same ``expunge.job_key``) are skipped, so
exporting twice adds nothing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def require_mlflow() -> Any:
    """The mlflow module, or ValueError saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise ValueError("MLflow export needs mlflow, which is not installed; install it with pip install mlflow") \
            from None
    return mlflow


def to_mlflow(out: str | Path, *, tracking_uri: str | None = None, experiment: str | None = None) -> int:
    """Export the bench in ``out``; return the number of MLflow runs created."""
    from .report import collect

    mlflow = require_mlflow()

    results = collect(out)
    grid = results.grid
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    name = experiment or f"expunge-bench-{grid.name}"
    mlflow.set_experiment(name)
    seen = {r.data.tags.get("expunge.job_key") for r in
            mlflow.search_runs(experiment_names=[name], output_format="list")}
    created = 0
    for cell in grid.cells:
        for method, key in cell.unlearn.items():
            rec = results.records.get(key)
            if rec is None or rec.status != "FINISHED" or key in seen:
                continue
            args = json.loads(rec.tags.get("result") or "{}").get("args", {})
            with mlflow.start_run(run_name=f"{cell.scenario} | {method} | seed {cell.seed}"):
                mlflow.log_params({"setup": cell.setup, "scenario": cell.scenario, "method": method,
                                   "seed": cell.seed, **{f"args.{k}": json.dumps(v) for k, v in args.items()}})
                mlflow.log_metrics({k: v for k, v in rec.metrics.items() if math.isfinite(v)})
                mlflow.set_tags({"expunge.job_key": key, "expunge.version": grid.version})
            seen.add(key)
            created += 1
    return created
