"""``expunge bench``: grids of datasets/models × forget scenarios × methods × seeds, run as resumable jobs.

>>> from expunge.bench import load_bench, run_bench        # doctest: +SKIP
>>> outcome = run_bench(load_bench("examples/bench_small.yaml"), out="bench-small")   # doctest: +SKIP

- :mod:`.spec` reads and validates the config (errors name the key path), with :mod:`.scenarios` (forget
  scenarios) and :mod:`.choices` (methods, arguments, tuning);
- :mod:`.grid` expands it into jobs keyed by content (originals, worst-case selections, oracles, tuning, unlearning);
- :mod:`.jobs` is what a worker runs; :mod:`.engines` runs jobs locally (joblib), on Dask or on Ray;
- :mod:`.runner` drives a bench: skips recorded jobs, records results, caches models;
- :mod:`.report`, :mod:`.plots`, :mod:`.compare` and :mod:`.export` turn a bench directory into reports,
  diffs and MLflow runs.
"""
from .engines import DaskEngine, LocalEngine, RayEngine, make_engine
from .grid import Grid, Job, expand, job_key
from .runner import BenchOutcome, load_grid, run_bench
from .spec import BenchSpec, load_bench, parse_bench

__all__ = ["load_bench", "parse_bench", "BenchSpec", "expand", "job_key", "Grid", "Job", "run_bench",
           "BenchOutcome", "load_grid", "make_engine", "LocalEngine", "DaskEngine", "RayEngine"]
