"""The same jobs give the same results whatever the engine: in this process, on a Dask cluster."""
from __future__ import annotations

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
