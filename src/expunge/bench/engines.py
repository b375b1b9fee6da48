"""Where jobs run: locally through joblib, on a Dask cluster, or as Ray tasks.

Every engine takes ``(tag, payload)`` pairs and yields ``(tag, result)`` pairs as jobs finish, in any order; it
consumes its input lazily, so the driver builds a payload (which carries models) only shortly before it is sent.
The job function is the same everywhere (:func:`expunge.bench.jobs.tagged_job`), so results do not depend on the
engine. A job that a Dask or Ray engine loses with its worker or node comes back as a transient failure (retried by
the next run). Local worker processes watch the driver that started them and exit as soon as it has gone (even when
it was killed with SIGKILL, which leaves it no time to stop them).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Iterator

from .jobs import run_job, tagged_job

log = logging.getLogger(__name__)

ENGINES = ("local", "dask", "ray")
Items = Iterable[tuple[str, dict[str, Any]]]


class LocalEngine:
    """joblib on this machine: ``workers`` processes (default: one per core), one torch thread each."""

    name = "local"

    def __init__(self, workers: int | None = None):
        from joblib import cpu_count   # the cores this process may use (affinity, cgroup quotas)

        self.workers = _workers(workers, cpu_count())

    def describe(self) -> str:
        return f"local, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def run(self, items: Items) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.workers == 1:   # in this process: no start-up cost, and the driver's memory is shared
            for tag, payload in items:
                yield tag, run_job(payload)
            return
        from joblib import Parallel, delayed, parallel_config

        # each worker first runs the watch below, given as source (exec) so that it starts before the worker
        # imports anything: a worker still importing torch when its driver dies exits too
        with parallel_config(backend="loky", inner_max_num_threads=1, initializer=exec,
                             initargs=(watch_driver_source(os.getpid()), {})):
            parallel = Parallel(n_jobs=self.workers, return_as="generator_unordered", pre_dispatch="2*n_jobs")
            yield from parallel(delayed(tagged_job)(tag, payload) for tag, payload in items)

    def close(self) -> None:
        pass


class DaskEngine:
    """An existing Dask cluster (``address``, or a ``distributed.Client``); at most two jobs per worker thread
    are in flight, so payloads are built as slots free up. A job whose worker was lost comes back as a transient
    failure."""

    name = "dask"

    def __init__(self, address: str | None = None, *, client: Any = None):
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("the dask engine needs dask.distributed; install it with pip install "
                             "'expunge[dask]'") from None
        if client is None and not address:
            raise ValueError("the dask engine needs the scheduler's address: --address tcp://HOST:8786")
        self._owned = client is None
        try:
            self.client = client if client is not None else Client(address, timeout=30)
        except (OSError, TimeoutError) as e:
            raise ValueError(f"cannot connect to the Dask scheduler at {address}: {e}") from None

    def describe(self) -> str:
        threads = sum(self.client.nthreads().values())
        return f"dask at {self.client.scheduler.address}, {threads} worker thread{'s' if threads != 1 else ''}"

    def run(self, items: Items) -> Iterator[tuple[str, dict[str, Any]]]:
        from distributed import as_completed

        window = max(2, 2 * sum(self.client.nthreads().values()))
        source = iter(items)
        pending = as_completed()
        tags: dict[str, str] = {}   # future key -> tag

        def submit() -> bool:
            nxt = next(source, None)
            if nxt is None:
                return False
            future = self.client.submit(tagged_job, nxt[0], nxt[1], pure=False)
            tags[future.key] = nxt[0]
            pending.add(future)
            return True

        for _ in range(window):
            if not submit():
                break
        for future in pending:
            tag = tags.pop(future.key)
            try:
                result = future.result()[1]
            except Exception as e:  # noqa: BLE001 - the job never raises: Dask lost its worker (KilledWorker, ...)
                result = _lost(e, "dask")
            future.release()
            submit()
            yield tag, result

    def close(self) -> None:
        if self._owned:
            self.client.close()


class RayEngine:
    """Ray tasks (the optional extra ``expunge[ray]``), one CPU each, ``workers`` of them in flight (default: the
    cluster's CPUs). ``address`` names a running cluster; without it the engine joins the Ray runtime this process
    already runs, else starts a local one (and shuts it down on :meth:`close`)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray engine needs ray, which is not installed; install it with "
                             "pip install 'expunge[ray]'") from None
        self._owned = not ray.is_initialized()
        if self._owned:
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, TimeoutError, RuntimeError) as e:
                raise ValueError(f"cannot connect to the Ray cluster at {address}: {_first_line(e)}") from None
        self.workers = _workers(workers, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1)(tagged_job)

    def describe(self) -> str:
        return f"ray, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def run(self, items: Items) -> Iterator[tuple[str, dict[str, Any]]]:
        import ray

        source = iter(items)
        pending: dict[Any, str] = {}   # task -> tag

        def submit() -> bool:
            nxt = next(source, None)
            if nxt is None:
                return False
            pending[self._task.remote(nxt[0], nxt[1])] = nxt[0]
            return True

        for _ in range(self.workers):
            if not submit():
                break
        while pending:
            (task,), _ = ray.wait(list(pending), num_returns=1)
            tag = pending.pop(task)
            try:
                result = ray.get(task)[1]
            except ray.exceptions.RayError as e:   # the job never raises: Ray lost its worker, node or result
                result = _lost(e, "ray")
            submit()
            yield tag, result

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()


def _lost(error: BaseException, engine: str) -> dict[str, Any]:
    """The result of a job the engine lost (a worker or node gone): a transient failure, retried on the next run."""
    return {"error": f"lost by the {engine} engine ({type(error).__name__}: {_first_line(error)})", "permanent": False,
            "traceback": str(error)}


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


_WATCH_DRIVER = """
import os, threading, time

def watch(driver, interval):
    while os.getppid() == driver:
        time.sleep(interval)
    os._exit(1)

if os.getppid() != {driver}:
    os._exit(1)
threading.Thread(target=watch, args=({driver}, {interval}), name="expunge-watch-driver", daemon=True).start()
"""


def watch_driver_source(driver_pid: int, interval: float = 0.25) -> str:
    """Python source for a local worker to run as it starts: exit at once if the driver ``driver_pid`` that
    started it has gone, and from then on within ``interval`` seconds of it going (a daemon thread polls the
    parent's pid; a driver killed by SIGKILL has no chance to stop its workers itself)."""
    return _WATCH_DRIVER.format(driver=int(driver_pid), interval=float(interval))


def make_engine(name: str = "local", *, address: str | None = None, workers: int | None = None):
    """An engine by name: local (joblib), dask (needs ``address``) or ray."""
    if name == "local":
        if address:
            raise ValueError("--address is for the dask and ray engines; the local engine runs on this machine")
        return LocalEngine(workers)
    if name == "dask":
        return DaskEngine(address)
    if name == "ray":
        return RayEngine(address, workers)
    raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(ENGINES)}")


def _workers(workers: int | None, default: int) -> int:
    if workers is None:
        return max(1, default)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    return workers
