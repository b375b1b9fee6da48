"""The driver: expand the grid, skip every job the job store already holds, run the rest stage by stage, record.

The bench's output directory holds

- ``runs.db``: the job store, a :class:`expunge.store.RunStore` (SQLite, WAL). Each finished job is one run
  tagged with its ``job_key``, written with its metrics and output in one transaction; a unique index forbids a
  second record of the same key. Each invocation of the bench is a run of kind ``bench``, parent of the jobs it ran.
- ``cache/<stage>/<key>.safetensors`` (+ ``.json``; a language model: the directory ``cache/<stage>/<key>`` in
  transformers' format with a checksum manifest): originals and oracles, saved atomically with
  :func:`expunge.save_model` before their job is recorded; also each unlearn job's model (``cache/unlearn``),
  kept for inspection (``expunge ui``, sample grids) and needed by no job; the sidecar records the weights'
  checksum, checked before a cached model is used: a truncated or corrupted one is removed and rebuilt like a lost
  one;
- ``grid.json``: the expanded job graph, which reports read;
- ``report.md``, ``report.html``, ``results.json``, ``plots/``: written at the end (see :mod:`.report`).

Only this process writes the store and the cache; workers return results. Killed at any moment (even by
SIGKILL), a bench loses at most the jobs in flight: on the next run every recorded job is reused, never rerun,
and a recorded model whose file has gone is retrained (bitwise identical: every job is seeded) before it is
needed. SIGTERM marks the open runs KILLED on the way out; a run whose process died without a word (SIGKILL) is
marked KILLED when the store is next opened (see :mod:`expunge.store`).

A job that failed permanently (see :mod:`.jobs`) is recorded as FAILED and not run again; ``retry_failed`` runs
such jobs again (replacing their record). A transient failure is not recorded: the next run retries it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from ..modelio import (LM_MANIFEST, atomic_write, check_language_model_files, check_model_files, load_model,
                       save_model, sidecar_path)
from ..store import DuplicateRunError, RunRecord, RunStore, terminate_as_interrupt
from .engines import LocalEngine
from .grid import MODEL_STAGES, STAGES, Grid, Job, expand
from .spec import BenchSpec

log = logging.getLogger(__name__)
STORE_NAME = "runs.db"


@dataclass
class BenchOutcome:
    out: Path
    grid: Grid
    ran: int = 0
    reused: int = 0
    blocked: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # (job, error): transient, retried next run
    permanent: list[tuple[str, str]] = field(default_factory=list)  # (job, error): recorded as failed, not retried
    wall_seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)


class DamagedModel(Exception):
    """A cached model failed its check when loaded; it has been removed, and the next run rebuilds it."""


class ModelCache:
    """Models (originals, oracles; unlearned models, kept for inspection) as safetensors + JSON under
    ``root/<stage>/<key>``; the last few loaded stay in memory.

    A cached pair counts as present only once it has passed :func:`expunge.modelio.check_model_files` (the
    safetensors layout and the checksum the sidecar records; checked once per file version): a damaged pair is
    removed, so the driver rebuilds it like a lost one."""

    def __init__(self, root: Path, keep: int = 8):
        self.root, self.keep = Path(root), keep
        self._loaded: OrderedDict[str, nn.Module] = OrderedDict()
        self._checked: dict[Path, tuple[int, int, int, int]] = {}

    def path(self, job: Job) -> Path:
        """Where ``job``'s model is cached: a language model as a directory (transformers' format), any other model
        as a safetensors file with its sidecar."""
        directory = self.root / job.kind / job.key
        return directory if directory.is_dir() else self.root / job.kind / f"{job.key}.safetensors"

    def has(self, job: Job) -> bool:
        p = self.path(job)
        if p.is_dir():
            manifest = p / LM_MANIFEST
            if not manifest.is_file():
                self.discard(job)        # a directory without its manifest was never finished
                return False
            m = manifest.stat()
            version = (m.st_size, m.st_mtime_ns, 0, 0)
        elif p.is_file() and sidecar_path(p).is_file():
            w, j = p.stat(), sidecar_path(p).stat()
            version = (w.st_size, w.st_mtime_ns, j.st_size, j.st_mtime_ns)
        else:
            return False
        if self._checked.get(p) != version:
            try:
                check_language_model_files(p) if p.is_dir() else check_model_files(p)
            except ValueError as e:
                log.warning("cached model %s is damaged and will be rebuilt: %s", p, e)
                self.discard(job)
                return False
            self._checked[p] = version
        return True

    def discard(self, job: Job) -> None:
        p = self.path(job)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
            sidecar_path(p).unlink(missing_ok=True)
        self._checked.pop(p, None)
        self._loaded.pop(job.key, None)

    def save(self, job: Job, model: nn.Module) -> Path:
        language = getattr(model, "tokenizer", None) is not None     # expunge.lm.CausalLM: a directory
        path = self.root / job.kind / (job.key if language else f"{job.key}.safetensors")
        return save_model(model, path, extra={"job_key": job.key, "labels": job.labels})

    def load(self, job: Job) -> nn.Module:
        if job.key not in self._loaded:
            try:
                self._loaded[job.key] = load_model(self.path(job))
            except ValueError as e:
                self.discard(job)
                raise DamagedModel(f"cached {job.kind} model was damaged and has been removed; rerun to rebuild "
                                   f"it ({e})") from None
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(job.key)
        return self._loaded[job.key]


def run_bench(bench: BenchSpec, *, out: str | Path | None = None, engine: Any = None, progress: bool = False,
              report: bool = True, retry_failed: bool = False) -> BenchOutcome:
    """Run every job of ``bench`` not yet recorded under ``out`` (default: the config's ``out``); with
    ``retry_failed``, also the jobs recorded as failed permanently."""
    out = Path(out or bench.out)
    grid = expand(bench)
    engine = engine or LocalEngine()
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with terminate_as_interrupt(), _exclusive(out), RunStore(out / STORE_NAME) as store:
        atomic_write(out / "grid.json", json.dumps(grid.to_dict(), indent=1, default=str).encode())
        with store.run(bench.name, "bench", params={"out": str(out), "engine": engine.describe(),
                                                     "seeds": bench.seeds, "jobs": len(grid.jobs)}) as bench_id:
            driver = _Driver(grid, store, ModelCache(out / "cache"), bench_id, retry_failed=retry_failed)
            outcome = driver.run(engine, out, progress)
            outcome.wall_seconds = time.perf_counter() - start
            failed = len(outcome.failures) + len(outcome.permanent)
            store.log_metrics(bench_id, {"wall_seconds": outcome.wall_seconds, "jobs_run": outcome.ran,
                                         "jobs_reused": outcome.reused, "jobs_failed": failed})
            if failed:
                store.end_run(bench_id, "FAILED", f"{failed} job(s) failed ({len(outcome.permanent)} permanently)")
    if report:
        from .report import write_bench_report

        outcome.paths = write_bench_report(out, summary=bench.summary)
    return outcome


class _Driver:
    def __init__(self, grid: Grid, store: RunStore, cache: ModelCache, parent: str, *, retry_failed: bool = False):
        self.grid, self.store, self.cache, self.parent = grid, store, cache, parent
        self.done: dict[str, RunRecord] = {k: r for k, r in store.tagged("job_key").items() if k in grid.jobs}
        # recorded failures to run again (their records are replaced when they end)
        self.retry = {k for k, r in self.done.items() if r.status != "FINISHED"} if retry_failed else set()

    def ok(self, key: str) -> bool:
        rec = self.done.get(key)
        return rec is not None and rec.status == "FINISHED"

    def result_of(self, key: str) -> dict[str, Any]:
        return json.loads(self.done[key].tags.get("result") or "{}")

    def plan(self) -> tuple[set[str], set[str]]:
        """Jobs to run, and recorded model jobs to retrain because a job to run needs their missing file."""
        pending = {k for k in self.grid.jobs if k not in self.done or k in self.retry}
        regen: set[str] = set()
        frontier = set(pending)
        while frontier:
            nxt = set()
            for k in frontier:
                for d in self.grid.jobs[k].deps.values():
                    dep = self.grid.jobs[d]
                    if dep.kind in MODEL_STAGES and self.ok(d) and d not in regen and not self.cache.has(dep):
                        regen.add(d)
                        nxt.add(d)
            frontier = nxt
        return pending, regen

    def ready(self, job: Job) -> bool:
        return all(self.ok(d) and (self.grid.jobs[d].kind not in MODEL_STAGES or self.cache.has(self.grid.jobs[d]))
                   for d in job.deps.values())

    def run(self, engine: Any, out: Path, progress: bool) -> BenchOutcome:
        from ..progress import Phase

        pending, regen = self.plan()
        outcome = BenchOutcome(out, self.grid, reused=len(self.grid.jobs) - len(pending))
        log.info("bench %s: %d jobs, %d recorded, %d to run on %s", self.grid.name, len(self.grid.jobs),
                 outcome.reused, len(pending), engine.describe())
        bar = Phase(f"bench {self.grid.name}", len(pending) + len(regen), "job", show=progress)
        with bar:
            for stage in STAGES:
                todo = [j for j in self.grid.by_stage(stage) if j.key in pending or j.key in regen]
                runnable = [j for j in todo if self.ready(j)]
                outcome.blocked += len(todo) - len(runnable)
                bar.advance(len(todo) - len(runnable))
                if not runnable:
                    continue
                for key, result in engine.run(self.items(runnable, outcome, bar)):
                    self.receive(self.grid.jobs[key], result, outcome, regen=key in regen)
                    bar.advance()
        outcome.permanent = [(describe(self.grid.jobs[k]), r.error or "failed") for k, r in self.done.items()
                             if r.status != "FINISHED"]
        return outcome

    def items(self, jobs: list[Job], outcome: BenchOutcome, bar: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(key, payload)`` per job, built as the engine asks for it; a job whose cached input turns out damaged
        is reported as a transient failure (its model is rebuilt on the next run)."""
        for job in jobs:
            try:
                payload = self.payload(job)
            except DamagedModel as e:
                log.warning("job %s not run: %s", describe(job), e)
                outcome.failures.append((describe(job), str(e)))
                bar.advance()
                continue
            yield job.key, payload

    def payload(self, job: Job) -> dict[str, Any]:
        jobs = self.grid.jobs
        original = job if job.kind == "original" else jobs[job.deps["original"]]
        p = {**job.spec, "kind": job.kind, "data": original.spec["data"], "data_seed": original.spec["seed"],
             "device": original.spec.get("device", "cpu")}
        if job.kind != "original":
            p["original"] = self.cache.load(original)
        if "oracle" in job.deps:
            p["oracle"] = self.cache.load(jobs[job.deps["oracle"]])
        if "select" in job.deps:
            p["indices"] = self.result_of(job.deps["select"])["indices"]
        if "tune" in job.deps:
            p["args"] = {**job.spec["args"], **self.result_of(job.deps["tune"])["best_args"]}
        return p

    def receive(self, job: Job, result: dict[str, Any], outcome: BenchOutcome, *, regen: bool) -> None:
        label = describe(job)
        error = result.get("error")
        if error and not result.get("permanent"):
            log.warning("job %s failed (transient, retried on the next run): %s\n%s", label, error,
                        result.get("traceback", ""))
            outcome.failures.append((label, error))
            return
        if error:
            log.warning("job %s failed permanently (recorded, not retried): %s\n%s", label, error,
                        result.get("traceback", ""))
        artifacts = {}
        if result.get("model") is not None:
            artifacts[str(self.cache.save(job, result["model"]).resolve())] = "model"
        if regen:
            return
        end = time.time()
        tags = {"job_key": job.key, "result": json.dumps(result.get("result", {}), default=str),
                "job_seconds": f"{result.get('job_seconds', 0.0):.6f}"}
        try:
            run_id = self.store.record(label, job.kind, params={"spec": job.spec, "deps": job.deps,
                                                                "labels": job.labels},
                                       metrics=result.get("metrics", {}), tags=tags, artifacts=artifacts,
                                       status="FAILED" if error else "FINISHED", error=error,
                                       start_time=end - float(result.get("job_seconds", 0.0)), end_time=end,
                                       parent_id=self.parent, replace=job.key in self.retry)
        except DuplicateRunError:
            log.warning("job %s was recorded meanwhile by another process; keeping that record", label)
            return
        self.done[job.key] = RunRecord(run_id, label, job.kind, "FAILED" if error else "FINISHED", end, end, error,
                                       self.parent, metrics=dict(result.get("metrics", {})), tags=tags)
        self.retry.discard(job.key)
        outcome.ran += 1
        log.info("%s %s", label, error or "done")


def describe(job: Job) -> str:
    """A short human name: stage, setup, scenario, method, seed."""
    lab = job.labels
    parts = [job.kind, lab.get("setup"), lab.get("scenario"), lab.get("method"),
             f"seed {lab['seed']}" if "seed" in lab else None]
    return " | ".join(str(p) for p in parts if p)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold a lock on the output directory so two drivers never share it (released by the OS on any exit)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another expunge bench is running in {out}; wait for it or use another --out") from None
        yield


def load_grid(out: str | Path) -> Grid:
    """The job graph of the bench in ``out``."""
    p = Path(out) / "grid.json"
    if not p.is_file():
        raise ValueError(f"{out} is not a bench directory (no grid.json); run `expunge bench CONFIG --out {out}`")
    return Grid.from_dict(json.loads(p.read_text()))
