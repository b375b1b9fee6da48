"""The Ray engine on a real local Ray runtime limited to 2 CPUs: the same grid gives bitwise the same results as in
this process, and a job whose worker dies comes back as a transient failure. One Ray runtime serves the module
(starting one takes seconds)."""
from __future__ import annotations

import tempfile

import pytest

from expunge.bench import load_bench, run_bench
from expunge.bench.engines import RayEngine
from expunge.cli import main

from .test_engines import local_outcomes, outcomes

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_runtime():
    with tempfile.TemporaryDirectory(prefix="ray-", dir="/tmp") as tmp:   # short: Ray's socket paths are limited
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
        try:
            yield
        finally:
            ray.shutdown()


def test_ray_gives_the_same_results_as_local(ray_runtime, tmp_path, store):
    ref = local_outcomes(tmp_path)
    engine = RayEngine()   # joins the running runtime and takes its CPUs as workers
    assert engine.workers == 2 and engine.describe() == "ray, 2 workers"
    outcome = run_bench(load_bench(tmp_path / "b.yaml"), out=tmp_path / "ray", engine=engine, report=False)
    engine.close()
    assert ray.is_initialized()   # close leaves a runtime the engine did not start
    assert not outcome.failures and outcome.ran == len(ref)
    assert outcomes(tmp_path / "ray") == ref
    # the CLI, one job at a time: resumes nothing (a fresh directory) and records the same
    assert main(["bench", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "cli"), "--engine", "ray",
                 "--workers", "1", "--no-report"]) == 0
    assert outcomes(tmp_path / "cli") == ref


def test_a_job_whose_ray_worker_dies_is_a_transient_failure(ray_runtime):
    def die(tag, payload):
        import os

        if payload["die"]:
            os._exit(3)
        return tag, {"metrics": {"x": 1.0}}

    engine = RayEngine(workers=2)
    engine._task = ray.remote(num_cpus=1, max_retries=0)(die)
    results = dict(engine.run([("a", {"die": True}), ("b", {"die": False})]))
    assert results["b"] == {"metrics": {"x": 1.0}}
    assert results["a"]["permanent"] is False
    assert results["a"]["error"].startswith("lost by the ray engine (") and "\n" not in results["a"]["error"]
