"""The same jobs give the same results whatever the engine: in this process, on a Dask cluster."""
from __future__ import annotations

from pathlib import Path

import pytest

from expunge.bench import DaskEngine, LocalEngine, load_bench, make_engine, run_bench
from expunge.bench.grid import is_timing
from expunge.cli import main
from expunge.store import RunStore

from .tiny import tiny, write_config


def scores(out) -> dict[str, dict[str, float]]:
    with RunStore(out / "runs.db") as s:
        recs = s.tagged("job_key")
    assert all(r.status == "FINISHED" for r in recs.values())
    return {k: {m: v for m, v in r.metrics.items() if not is_timing(m)} for k, r in recs.items()}


# every kind of job (original, worst-case selection, oracle, tuning, unlearn) on the tiny task: 13 jobs
EVERY_KIND = tiny(seeds=1, scenarios=[{"name": "random 10%", "fraction": 0.1},
                                      {"name": "worst 10%", "worst_case": {"fraction": 0.1, "method": "finetune"}}],
                  tuning={"trials": 2, "methods": ["finetune"], "space": {"finetune": {"lr": [0.005, 0.05]}}})
EVERY_KIND_JOBS = {"original": 1, "select": 1, "oracle": 3, "tune": 1, "unlearn": 4}


def outcomes(out) -> dict[str, tuple[str, dict[str, float], str]]:
    """Per job key: the kind, the metrics other than timings, and the structured result (tuned arguments and
    trials, selected indices, arguments used), for comparing engines bitwise."""
    import json

    with RunStore(out / "runs.db") as s:
        recs = s.tagged("job_key")
    assert all(r.status == "FINISHED" for r in recs.values()), [r.error for r in recs.values()]
    return {k: (r.kind, {m: v for m, v in r.metrics.items() if not is_timing(m)},
                json.dumps(_no_timings(json.loads(r.tags["result"])), sort_keys=True)) for k, r in recs.items()}


def _no_timings(value):
    if isinstance(value, dict):
        return {k: _no_timings(v) for k, v in value.items() if not is_timing(k)}
    if isinstance(value, list):
        return [_no_timings(v) for v in value]
    return value


def local_outcomes(tmp_path) -> dict[str, tuple[str, dict[str, float], str]]:
    """:data:`EVERY_KIND` run in this process, checked for its job counts; also writes ``tmp_path/b.yaml``."""
    from collections import Counter

    cfg = write_config(tmp_path / "b.yaml", EVERY_KIND)
    outcome = run_bench(load_bench(cfg), out=tmp_path / "local", engine=LocalEngine(1), report=False)
    assert not outcome.failures and outcome.blocked == 0
    ref = outcomes(tmp_path / "local")
    assert Counter(kind for kind, _, _ in ref.values()) == EVERY_KIND_JOBS
    assert any("avg_gap" in m for _, m, _ in ref.values())
    return ref


def test_local_and_dask_give_identical_metrics(tmp_path, store):
    distributed = pytest.importorskip("distributed")
    cfg = write_config(tmp_path / "b.yaml", tiny(seeds=1))
    local = run_bench(load_bench(cfg), out=tmp_path / "local", engine=LocalEngine(1), report=False)
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        engine = DaskEngine(cluster.scheduler_address)
        try:
            assert "dask at" in engine.describe()
        finally:
            engine.close()
        assert main(["bench", str(cfg), "--out", str(tmp_path / "dask"), "--engine", "dask",
                     "--address", cluster.scheduler_address, "--no-report"]) == 0
    assert local.ran == 7
    a, b = scores(tmp_path / "local"), scores(tmp_path / "dask")
    assert len(b) == 7 and a == b
    assert any("avg_gap" in m for m in a.values())


def test_make_engine_defaults():
    engine = make_engine("local")
    assert engine.workers >= 1 and engine.describe().startswith("local")
    assert make_engine("local", workers=3).workers == 3


DRIVER = """
import sys
from expunge.bench import engines
from tests.bench.sleepy import sleepy_job

engines.tagged_job = sleepy_job
for _ in engines.LocalEngine(2).run((str(i), {"seconds": 120, "started": sys.argv[1]}) for i in range(4)):
    pass
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_local_workers_exit_when_the_driver_is_killed(tmp_path):
    """SIGKILL gives the driver no time to stop its loky workers; they notice on their own within a second."""
    import os
    import subprocess
    import sys
    import time

    from expunge.store import _process_start

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        time.sleep(0.1)
        workers = {int(f.read_text()) for f in tmp_path.iterdir()}
        assert len(workers) == 2 and driver.pid not in workers
        started = {pid: _process_start(pid) for pid in workers}
        assert all(started.values())
    finally:
        driver.kill()
        driver.wait(30)
    killed = time.monotonic()

    def alive() -> list[int]:
        return [pid for pid in workers if _process_start(pid) == started[pid]]

    while alive() and time.monotonic() - killed < 10:
        time.sleep(0.05)
    assert not alive(), "workers outlived their driver"
    assert time.monotonic() - killed < 5
