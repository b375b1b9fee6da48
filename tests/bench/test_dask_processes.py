"""The Dask engine on a cluster of separate processes: a ``dask scheduler`` and a ``dask worker`` with two worker
processes (one thread each), started from the command line on free ports and torn down whatever the test's
outcome. The same grid gives bitwise the same results as in this process; a job whose worker process dies comes
back as a transient failure."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expunge.bench import DaskEngine
from expunge.cli import main

from .test_engines import local_outcomes, outcomes

distributed = pytest.importorskip("distributed")
DASK = Path(sys.executable).with_name("dask")
WORKERS = 2


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (a worker's nanny and its worker processes share one), SIGKILL what is left after
    a grace period, and wait until every group is empty."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 15.0)):
        for p in procs:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(p) for p in procs):
            for p in procs:
                p.poll()
            time.sleep(0.1)
        if not any(_group_alive(p) for p in procs):
            return
    raise AssertionError(f"dask processes still running: {[p.args[:2] for p in procs if _group_alive(p)]}")


def _group_alive(p: subprocess.Popen) -> bool:
    p.poll()   # reaps the group leader once it has exited
    try:
        os.killpg(p.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory):
    """``(address, scheduler_file)`` of a scheduler and workers running as separate processes."""
    if not DASK.exists():
        pytest.skip(f"the dask command line is not installed next to {sys.executable}")
    root = tmp_path_factory.mktemp("dask")
    sched_file = root / "scheduler.json"
    # each worker process may die at most once before its job is given up (KilledWorker), so a job that kills its
    # worker fails fast; idle timeouts end the processes even if this test process is killed without cleaning up
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", "OMP_NUM_THREADS": "1"}
    log = open(root / "dask.log", "wb")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--idle-timeout", "600", "--scheduler-file",
                                       str(sched_file)], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        procs.append(subprocess.Popen([str(DASK), "worker", "--scheduler-file", str(sched_file), "--nworkers",
                                       str(WORKERS), "--nthreads", "1", "--no-dashboard", "--death-timeout", "60",
                                       "--host", "127.0.0.1"], env=env, cwd=root, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        assert sched_file.exists(), (root / "dask.log").read_text(errors="replace")[-2000:]
        with distributed.Client(scheduler_file=str(sched_file), timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=60)
            address = client.scheduler.address
        yield address, sched_file
    finally:
        try:
            _stop(procs)
        finally:
            log.close()


def test_dask_processes_give_the_same_results_as_local(dask_processes, tmp_path, store):
    address, _ = dask_processes
    ref = local_outcomes(tmp_path)
    engine = DaskEngine(address)
    try:
        assert engine.describe() == f"dask at {address}, {WORKERS} worker threads"
    finally:
        engine.close()
    assert main(["bench", str(tmp_path / "b.yaml"), "--out", str(tmp_path / "dask"), "--engine", "dask",
                 "--address", address, "--no-report"]) == 0
    assert outcomes(tmp_path / "dask") == ref


def test_a_job_whose_dask_worker_dies_is_a_transient_failure(dask_processes):
    def die(tag, payload):
        import os

        if payload["die"]:
            os._exit(3)
        return tag, {"metrics": {"x": 1.0}}

    from expunge.bench import engines

    address, _ = dask_processes
    engine = DaskEngine(address)
    real, engines.tagged_job = engines.tagged_job, die
    try:
        results = dict(engine.run([("a", {"die": True}), ("b", {"die": False})]))
    finally:
        engines.tagged_job = real
        engine.close()
    assert results["b"] == {"metrics": {"x": 1.0}}
    assert results["a"]["permanent"] is False
    error = results["a"]["error"]
    assert error.startswith("lost by the dask engine (KilledWorker") and "\n" not in error
