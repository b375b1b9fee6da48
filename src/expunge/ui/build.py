"""Runs started from the page (Build): checked as ``expunge run`` checks them, queued, run one at a time.

A request is one of

- ``{"kind": "run", "base": <experiment id>, "method": name, "args": {...}, "forget": {...}, "seed": n}``: the base
  experiment's data, model, recipe, forget request and seed, with another method and arguments and, when given,
  another forget request and seed;
- ``{"kind": "run", "config": {...}}``: an experiment config, as in an ``expunge run`` YAML file, without ``out``;
- ``{"kind": "bench", "config": {...}}``: a benchmark config, as in an ``expunge bench`` YAML file, without ``out``
  and ``summary`` (the top-level keys a page may send are listed in :data:`PAGE_KEYS`: nothing that names a file the
  child writes).

It goes through the checks of the command line before anything is queued: for a run the config's validation
(:func:`expunge.config.parse_config`: the method from the registry, its arguments parsed as the method parses them,
the forget request), then the data, the split and the model (:func:`expunge.experiment.prepare`, which runs
``split_forget``) and the method against them (:func:`expunge.experiment.check_experiment`); for a bench
:func:`expunge.bench.parse_bench` and the job graph (:func:`expunge.bench.expand`). A data or model file a config
names must be a string naming a file under one of the comparator's paths. Bad input raises ValueError with one line
and queues nothing. A request holds its place in the queue while it is checked (the limit holds under concurrent
requests), and requests are checked one at a time.

One worker thread runs the queued jobs in order, each as ``expunge run`` or ``expunge bench --workers 1`` in a
child process (the same code and checks; recorded in the comparator's run store, the model or the bench directory written under
``ui-builds/<job>`` next to the store, where the experiment list finds it); the child's output and its progress
lines (:mod:`expunge.progress`, one a second) are the job's ``progress``; a run that fails or diverges, or a bench
with a failed job, ends the job with the command's one-line error.
"""
from __future__ import annotations

import copy
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("run", "bench")
RUN_KEYS = ("kind", "config", "base", "method", "args", "forget", "seed", "name")
MAX_QUEUED = 16            # jobs waiting at once; more are refused
MAX_LINES = 400            # progress lines a job keeps (the last ones)
PROGRESS_INTERVAL = 1.0    # seconds between the child's progress lines
DATA_FILES = ("npz", "csv", "images", "jsonl", "tokenizer")
# top-level config keys a page may send (``out`` and a bench's ``summary`` name files the child writes: never from
# the page; the comparator chooses where runs go)
PAGE_KEYS = {"run": ("name", "seed", "data", "model", "train", "forget", "method", "args", "tuning", "scoring"),
             "bench": ("name", "seeds", "data", "model", "train", "scenarios", "methods", "exclude", "args", "tuning",
                       "scoring", "noise_floor", "device")}
_CHILD = ("import sys, expunge.progress as progress; progress.INTERVAL = float(sys.argv.pop(1)); "
          "from expunge.cli import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class Job:
    """One queued run: its config, status, progress lines, error and, once recorded, its run and experiment."""

    id: str
    config: dict[str, Any]
    kind: str = "run"                 # run | bench
    status: str = "queued"            # queued -> running -> finished | failed
    progress: list[str] = field(default_factory=list)
    error: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0                  # bumped on every change (the event stream sends a state when it moves)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def log(self, line: str) -> None:
        with self._lock:
            self.progress.append(line)
            del self.progress[:-MAX_LINES]
            self.version += 1

    def update(self, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)
            self.version += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"job": self.id, "kind": self.kind, "status": self.status, "progress": list(self.progress),
                    "error": self.error, "experiment": self.experiment, "run": self.run_id,
                    "method": self.config.get("method") if self.kind == "run" else "bench",
                    "name": self.config.get("name"), "created": self.created, "started": self.started,
                    "finished": self.finished}


def recorded_config(ws: Any, exp_id: str) -> dict[str, Any] | None:
    """The run config behind experiment ``exp_id`` as the data layer recorded it: a run's own config; for a bench
    row, the data, model, recipe and seed of its cell's original (``grid.json``) with the cell's forget request (a
    worst-case set as its indices). None when neither is known."""
    import json

    entry = ws._entry(exp_id)
    if getattr(entry, "config", None):
        return dict(entry.config)
    request, original = getattr(entry, "request", None), entry.files.get("original")
    if entry.row.get("kind") != "bench" or request is None or original is None:
        return None
    from ..bench.grid import Grid

    bench = Path(original).parents[2]            # <bench>/cache/original/<key>.safetensors
    grid = Grid.from_dict(json.loads((bench / "grid.json").read_text()))
    key = exp_id.split(":")[-1].removesuffix("-original")
    cell = next((c for c in grid.cells if key in (c.original, c.oracle, c.floor, *c.unlearn.values())), None)
    if cell is None:
        return None
    spec = grid.jobs[cell.original].spec
    if request.indices is not None:
        forget: dict[str, Any] = {"indices": list(request.indices)}
    else:
        forget = dict(request.forget)
        if any(k in forget for k in ("fraction", "group_fraction")):
            forget["seed"] = request.split_seed
    return {"seed": int(spec["seed"]), "data": spec["data"], "model": spec["model"], "train": spec["recipe"],
            "forget": forget}


class Builder:
    """The build queue of one comparator: ``submit`` checks and queues, one worker thread runs.

    ``ws``: the data layer's Workspace (base experiments, paths allowed for data files, the rows that appear);
    ``store``: the run store runs are recorded in; models and bench directories go to ``ui-builds/`` next to it."""

    def __init__(self, ws: Any, store: str | Path, *, workdir: str | Path | None = None):
        self.ws, self.store = ws, Path(store).expanduser().resolve()
        self.workdir = (Path(workdir) if workdir is not None else self.store.parent / "ui-builds").resolve()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self._reserved = 0                       # requests being checked (they hold a place in the queue)
        self._checking = threading.Lock()        # one request checked at a time

    # -- requests -----------------------------------------------------------------------------------------------
    def submit(self, body: Any) -> Job:
        """Check ``body`` and queue its run; ValueError (one line) and nothing queued on bad input.

        A place in the queue is reserved before the (slow) checks, so concurrent requests cannot pass the limit
        together; the checks run one at a time."""
        with self._lock:
            if self._closed:
                raise ValueError("the comparator is shutting down; no new runs")
            waiting = sum(j.status == "queued" for j in self._jobs.values()) + self._reserved
            if waiting >= MAX_QUEUED:
                raise ValueError(f"{waiting} runs are waiting already; at most {MAX_QUEUED} may wait at once")
            self._reserved += 1
        try:
            with self._checking:
                config = self.config_for(body)
            job = Job(uuid.uuid4().hex[:12], config, kind=body.get("kind", "run"))
            job.log(f"queued: {config['method'] if job.kind == 'run' else 'bench'} "
                    f"{config.get('name') or ''}".rstrip())
            with self._lock:
                if self._closed:
                    raise ValueError("the comparator is shutting down; no new runs")
                self._jobs[job.id] = job
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="expunge-ui-build", daemon=True)
                    self._thread.start()
                self._queue.put(job)
        finally:
            with self._lock:
                self._reserved -= 1
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._jobs[job_id]

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def config_for(self, body: Any) -> dict[str, Any]:
        """The checked config of a build request (see the module docstring); ValueError with one line otherwise."""
        from ..config import ConfigError, parse_config
        from ..experiment import check_experiment, prepare

        if not isinstance(body, dict):
            raise ValueError(f"a build request is a JSON object such as {{\"kind\": \"run\", \"base\": <experiment "
                             f"id>, \"method\": \"finetune\", \"args\": {{}}}}; got {type(body).__name__}")
        kind = body.get("kind", "run")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not allowed; expected {', '.join(KINDS)}")
        unknown = sorted(set(body) - set(RUN_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in the build request; allowed: {', '.join(RUN_KEYS)}")
        if kind == "bench":
            return self._bench_request(body)
        raw = self._config_request(body) if "config" in body else self._base_request(body)
        try:
            cfg = parse_config(raw)          # fills in and makes absolute what it checks (raw is changed in place)
            prepared = prepare(cfg)          # data, split_forget, the untrained model
            check_experiment(cfg, prepared)  # the method against this data, model and request
            raw["name"] = cfg.name
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ValueError(" ".join(str(e).split())) from None
        return raw

    def _bench_request(self, body: dict[str, Any]) -> dict[str, Any]:
        from ..bench import expand, parse_bench

        if not isinstance(body.get("config"), dict):
            raise ValueError("a bench request is {\"kind\": \"bench\", \"config\": {...}} with a benchmark config "
                             "(name, seeds, data, model, train, scenarios, methods, ...)")
        raw = self._config_request(body)
        try:
            expand(parse_bench(copy.deepcopy(raw)))     # the config's checks and the job graph, as expunge bench
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(" ".join(str(e).split())) from None
        return raw

    def _config_request(self, body: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(body) - {"kind", "config"})
        if extra:
            raise ValueError(f"a request with a config takes no {extra[0]!r} (put it in the config)")
        raw = body["config"]
        if not isinstance(raw, dict):
            raise ValueError(f"config must be a mapping of settings (data, model, train, forget, method, args, "
                             f"seed); got {type(raw).__name__}")
        raw = copy.deepcopy(raw)
        allowed = PAGE_KEYS[body.get("kind", "run")]
        refused = sorted(set(raw) - set(allowed), key=lambda k: (k not in ("out", "summary"), str(k)))
        if refused:
            raise ValueError(f"config.{refused[0]} is not allowed from the page: the comparator chooses where runs "
                             f"are written; allowed: {', '.join(allowed)}")
        self._check_files(raw)
        return raw

    def _base_request(self, body: dict[str, Any]) -> dict[str, Any]:
        base_id = body.get("base")
        if not isinstance(base_id, str) or not base_id:
            raise ValueError("a build request needs base (the id of the experiment whose data, model and recipe to "
                             "use) and method, or a whole config")
        method = body.get("method")
        if not isinstance(method, str) or not method:
            raise ValueError(f"method must be a method name (see /api/methods); got {method!r}")
        raw = self.base_config(base_id)
        raw["method"] = method
        raw["args"] = copy.deepcopy(body.get("args", {}))
        if raw["args"] is None:
            raw["args"] = {}
        if "forget" in body:
            raw["forget"] = copy.deepcopy(body["forget"])
        if "seed" in body:
            raw["seed"] = body["seed"]
        name = body.get("name", f"{raw.get('name') or 'ui'}-{method}")
        raw["name"] = name if not isinstance(name, str) else name[:128]
        return raw

    def base_config(self, exp_id: str) -> dict[str, Any]:
        """The experiment config behind experiment ``exp_id`` (its data, model, recipe, forget request and seed)."""
        try:
            row = self.ws.experiment(exp_id)
        except KeyError:
            raise ValueError(f"unknown base experiment {exp_id!r}") from None
        getter = getattr(self.ws, "config", None)
        raw = getter(exp_id) if callable(getter) else recorded_config(self.ws, exp_id)
        if not isinstance(raw, dict) or "data" not in raw:
            raise ValueError(f"experiment {exp_id!r} ({row.get('kind')}, status {row.get('status')}) does not record "
                             "the data, model and recipe it was run with; pick a finished run or bench row, or send "
                             "a whole config")
        keep = ("seed", "data", "model", "train", "forget", "scoring")
        raw = {k: copy.deepcopy(raw[k]) for k in keep if raw.get(k) is not None}
        raw["data"] = {k: v for k, v in raw["data"].items() if k != "sha256"}   # a bench's content hash
        extra = sorted(set(raw.get("model", {})) - {"name", "args", "path"})
        if extra:
            raise ValueError(f"experiment {exp_id!r} has an original built with model.{extra[0]}, which a run "
                             "config cannot express; pick another base experiment")
        return raw

    def _check_files(self, raw: dict[str, Any]) -> None:
        """Data and model files a config names must lie under the comparator's paths (made absolute here)."""
        sections = [("data", k) for k in DATA_FILES] + [("model", "path")]
        for section, key in sections:
            parts = raw.get(section) if isinstance(raw.get(section), list) else [raw.get(section)]   # a bench's lists
            for part in parts:
                self._check_file(part, section, key)

    def _check_file(self, part: Any, section: str, key: str) -> None:
        if not isinstance(part, dict) or part.get(key) is None:
            return
        if not isinstance(part[key], str):
            raise ValueError(f"{section}.{key} must be a path (a string) under the comparator's paths; "
                             f"got {type(part[key]).__name__}")
        try:
            part[key] = str(self.ws.resolve(part[key]))
        except ValueError as e:
            raise ValueError(f"{section}.{key}: {' '.join(str(e).split())}") from None

    # -- the worker ---------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                if job is not None:
                    job.update(status="failed", error="the comparator stopped before this run started",
                               finished=time.time())
                return
            try:
                self._run(job)
            except Exception as e:  # noqa: BLE001 - the job fails with one line; the worker goes on
                job.update(status="failed", error=" ".join(f"{type(e).__name__}: {e}".split()), finished=time.time())

    def _run(self, job: Job) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = self.workdir / job.id
        path = self.workdir / f"{job.id}.yaml"
        path.write_text(yaml.safe_dump(job.config, sort_keys=False))
        job.update(status="running", started=time.time())
        job.log(f"running: expunge {job.kind} {path.name} --out {out.name} --store {self.store}")
        cmd = [sys.executable, "-c", _CHILD, str(PROGRESS_INTERVAL), job.kind, str(path), "--out", str(out),
               "--store", str(self.store)]
        if job.kind == "bench":
            cmd += ["--workers", "1"]          # jobs in the child itself, one at a time, beside the server
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        error = None
        with self._lock:              # close() sees either no child (and none starts after it) or this one
            if self._closed:
                job.update(status="failed", error="the comparator stopped before this run started",
                           finished=time.time())
                return
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, bufsize=1, env=env, cwd=str(self.workdir))
            self._proc = proc
        with proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if not line:
                    continue
                job.log(line)
                if line.startswith("error: "):
                    error = line[len("error: "):]
                m = re.match(r"Recorded as run ([0-9a-f]+)\.", line)
                if m:
                    job.update(run_id=m.group(1))
            code = proc.wait()
            with self._lock:
                self._proc = None
        if code != 0 and error is None:
            error = "stopped" if self._closed else f"expunge run ended with exit code {code}"
        if job.run_id is None:
            job.update(run_id=self._recorded_run(job))
        job.update(experiment=self._experiment_of(job.run_id) if job.kind == "run" else self._bench_row(job))
        if code == 0:
            job.update(status="finished", finished=time.time())
        else:
            job.update(status="failed", error=error, finished=time.time())

    def _recorded_run(self, job: Job) -> str | None:
        """The run this job recorded (a failed run is recorded too): the newest of its name since it started."""
        from ..store import RunStore

        if not self.store.is_file():
            return None
        with RunStore(self.store) as db:
            for rec in db.runs(limit=20, kind=job.kind):
                same = job.kind == "bench" or rec.name == job.config.get("name")
                if same and rec.start_time >= (job.started or 0) - 1:
                    return rec.run_id
        return None

    def _experiment_of(self, run_id: str | None) -> str | None:
        """The id of the experiment row of run ``run_id`` (the data layer names runs ``run:<store>:<run id>``)."""
        if run_id is None:
            return None
        refresh = getattr(self.ws, "refresh", None)
        if callable(refresh):
            refresh()
        for row in self.ws.experiments():
            if row.get("kind") == "run" and str(row.get("id", "")).split(":")[-1] == run_id:
                return row["id"]
        return None

    def _bench_row(self, job: Job) -> str | None:
        """The first method row of the bench a job wrote (the data layer names its rows ``bench:<dir>:<key>``)."""
        rows = [r for r in self.ws.experiments() if str(r.get("id", "")).startswith(f"bench:{job.id}:")]
        methods = [r for r in rows if r.get("method") not in ("original", "oracle")]
        return (methods or rows or [{}])[0].get("id")

    def close(self) -> None:
        """Stop: the running child is terminated, waiting jobs fail with a line saying so."""
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.update(status="failed", error="the comparator stopped before this run started",
                           finished=time.time())
        self._queue.put(None)
