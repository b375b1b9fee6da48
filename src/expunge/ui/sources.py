"""The comparator's experiments: found under the paths it was given, with their models and data.

:class:`Workspace` reads three kinds of source, each a path given to ``expunge ui`` or found one directory level
below one:

- **bench output directories** (``grid.json`` + ``runs.db``, written by ``expunge bench``): one row per cell and
  method (a cell is setup × scenario × seed), plus the cell's original and oracle (and its second oracle where the
  bench measures the noise floor). A row's model is the job's cached file (``cache/unlearn/<key>``; the original
  and oracle under ``cache/original`` and ``cache/oracle``); its data and forget/retain split are rebuilt from the
  job's recorded settings exactly as the bench's worker built them (``expunge.bench.jobs``). Scores are the job's
  recorded metrics; the noise floor is the one ``results.json`` gives for the row's setup and scenario.
- **run stores** (``*.db``, written by ``expunge run``, and the ``--store``): one row per run of kind ``run``.
  Its model is the file the run recorded (an image generator's run also records its original and oracle); an
  original and oracle it did not save are retrained on demand from the recorded config (seeded, hence the same
  weights the run used on the CPU) and kept under ``$EXPUNGE_CACHE/ui/models``. Runs of kind ``bench`` and
  ``audit`` in a store lead to their output directories.
- **audit output directories** (``audit.json``, written by ``expunge audit``): one row per audit (kind ``audit``;
  evidence tier, scores, no model). Where the audit's config is known (its run in a store read here) and it audited
  the same method on the same data, model, recipe and forget request as a run or bench row, that row's Attack view
  also shows the audit's per-example ε, KLoM and U-LiRA.

Security: :meth:`Workspace.resolve` turns a relative path into a file under one of the given paths (symlinks
resolved and checked again; absolute paths and ``..`` refused with :class:`Refused`). Models are read only through
:func:`expunge.load_model` (safetensors and its sidecar; pickle files are refused) from a given path or from a file
a given run store records (a store is the user's own record of where their runs wrote).

Experiment ids are stable, URL-safe strings: ``bench:<dir>:<job key>`` (the cell's original:
``bench:<dir>:<oracle key>-original``), ``run:<store>:<run id>``, ``audit:<dir>``; ``<dir>`` and ``<store>`` are
the directory's or file's name reduced to ``[A-Za-z0-9._-]`` (``-2``, ``-3`` … added when two sources share one).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

log = logging.getLogger(__name__)

ROLES = ("model", "original", "oracle")
VIEWS = {"classification": ["classwise", "matrix", "cka", "projection", "attack"],
         "regression": ["cka", "projection"], "language": ["facts"], "generation": ["samples"]}
SCORE_KEYS = {"ua": "ua", "ra": "retain_acc", "ta": "test_acc", "mia": "mia_efficacy", "avg_gap": "avg_gap",
              "seconds": "seconds"}
GENERATION_SCORE_KEYS = {"ua": "unlearning_accuracy", "ra": "retain_generation_accuracy"}
COLUMNS = [{"key": "method", "label": "method"}, {"key": "args", "label": "arguments"},
           {"key": "scenario", "label": "scenario"}, {"key": "seed", "label": "seed"},
           {"key": "ua", "label": "UA"}, {"key": "ra", "label": "RA"}, {"key": "ta", "label": "TA"},
           {"key": "mia", "label": "MIA"}, {"key": "avg_gap", "label": "Avg. Gap"},
           {"key": "noise_floor", "label": "noise floor"}, {"key": "seconds", "label": "seconds"},
           {"key": "tier", "label": "tier"}, {"key": "status", "label": "status"}]
MODEL_CACHE = 6            # models kept in memory
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class Refused(ValueError):
    """A path outside the given roots, absolute, with ``..``, or a symlink leading out of them."""


@dataclass
class Request:
    """How an experiment's data and forget/retain split are rebuilt: ``expunge.experiment.load_data(data,
    data_seed)``, then ``make_split(train, forget, split_seed)`` or, for a worst-case set, the recorded ``indices``."""

    data: dict[str, Any]
    data_seed: int
    forget: dict[str, Any]
    split_seed: int
    indices: list[int] | None = None


@dataclass
class ExperimentData:
    """An experiment's data: ``train`` (positions in it are the ``index`` every view uses), ``test``, the
    ``forget`` and ``retain`` subsets of ``train`` and their positions, the task and the class names."""

    train: Any
    test: Any
    forget: Any
    retain: Any
    forget_index: list[int]
    retain_index: list[int]
    task: str
    class_names: list[str] | None = None
    world: Any = None


@dataclass
class _Entry:
    row: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)     # role -> model file or directory
    request: Request | None = None
    config: dict[str, Any] | None = None     # a run's config: its original and oracle are retrained from it
    match: str | None = None                 # what links an audit to this experiment
    audit: Path | None = None                # audit.json of an audit of the same request


class Workspace:
    """The experiments under ``paths`` (bench directories, run stores, audit directories, or directories holding
    them, scanned one level deep) and in ``store``; see the module docstring. ValueError naming a path that does
    not exist."""

    def __init__(self, paths: list[Path] | list[str], store: Path | str | None = None):
        given = [Path(p) for p in paths] + ([Path(store)] if store is not None else [])
        for p in given:
            if not p.exists():
                raise ValueError(f"{p} does not exist; give bench or audit output directories, run stores (*.db) or "
                                 "directories holding them")
        self.paths = [Path(os.path.realpath(p)) for p in paths]
        self.store = Path(os.path.realpath(store)) if store is not None else None
        self.roots = list(dict.fromkeys(self.paths + ([self.store] if self.store else [])))
        self._entries: dict[str, _Entry] = {}
        self._sources: dict[tuple[str, Path], tuple[Any, list[_Entry]]] = {}
        self._allowed: set[Path] = set()       # model files and output directories the given stores record
        self._models: OrderedDict[tuple[str, str], nn.Module] = OrderedDict()
        self._data: OrderedDict[str, ExperimentData] = OrderedDict()
        self._lock = threading.RLock()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self.problems: list[str] = []          # one line per source that could not be read

    # ------------------------------------------------------------------------------------------- experiments
    def experiments(self) -> list[dict[str, Any]]:
        """One row per run, bench cell × method × seed and audit; re-read from disk when a source changed.

        A row is a JSON-ready dict: ``id`` (stable, URL-safe), ``source`` (the directory's or store's name),
        ``kind`` (``run``, ``bench`` or ``audit``), ``task`` (``classification``, ``regression``, ``language`` or
        ``generation``), ``method``, ``args`` (the method's arguments), ``scenario`` (the forget request in words, or
        None), ``seed``, ``scores`` (``ua``, ``ra``, ``ta``, ``mia``, ``avg_gap``, ``noise_floor``, ``seconds``,
        each None where not measured, plus the columns the task's report shows for language, generation and
        regression rows), ``tier`` (the evidence tier or None), ``status`` (the store's: ``FINISHED``, ``FAILED``,
        ``RUNNING``, ``PENDING`` …), ``error`` (its one line or None), ``has_model`` (whether the views can load its
        model) and ``views`` (the names of the :mod:`.analysis` views it supports). Run and bench rows also carry
        ``audit`` (whether an audit of the same request is linked); bench rows ``setup``; run rows ``name``; audit
        rows ``n_models`` and ``verdict``."""
        with self._lock:
            self._refresh()
            return [json.loads(json.dumps(e.row)) for e in self._entries.values()]

    def experiment(self, id: str) -> dict[str, Any]:
        """The row of experiment ``id``; KeyError if unknown."""
        return json.loads(json.dumps(self._entry(id).row))

    def _entry(self, id: str) -> _Entry:
        with self._lock:
            if id not in self._entries:
                self._refresh()
            if id not in self._entries:
                raise KeyError(id)
            return self._entries[id]

    # ---------------------------------------------------------------------------------------------- paths
    def resolve(self, path: str) -> Path:
        """``path`` (relative, no ``..``) as an existing file or directory under one of the given paths, symlinks
        resolved and checked again; :class:`Refused` otherwise."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise Refused(f"path {path!r} is not allowed; expected a relative path under the given directories")
        p = Path(path)
        if p.is_absolute() or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
            raise Refused(f"absolute path {path!r} is not allowed; expected a path relative to a given directory")
        if ".." in re.split(r"[\\/]+", path):
            raise Refused(f"path {path!r} is not allowed: '..' leads out of the given directories")
        for root in self.roots:
            if not root.is_dir():
                continue
            candidate = root / p
            real = Path(os.path.realpath(candidate))
            if candidate.exists() and any(_inside(real, r) for r in self.roots):
                return real
            if candidate.exists() or os.path.lexists(candidate):
                raise Refused(f"path {path!r} leads out of the given directories (a symlink)")
        raise Refused(f"path {path!r} is not a file under the given directories")

    def _checked(self, path: Path) -> Path:
        """``path`` (symlinks resolved) if it lies under a given path or a location a given store records."""
        real = Path(os.path.realpath(path))
        if any(_inside(real, r) for r in self.roots) or any(_inside(real, a) for a in self._allowed):
            return real
        raise Refused(f"{path} lies outside the given paths")

    # ---------------------------------------------------------------------------------------------- models
    def model(self, id: str, role: str = "model") -> nn.Module:
        """Experiment ``id``'s ``role`` model (``model``: the unlearned one; ``original``; ``oracle``), loaded with
        :func:`expunge.load_model` (safetensors, never pickle), or for a run's original and oracle retrained from its
        config and cached; ValueError when it has none. The returned module is shared: do not modify it."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not allowed; allowed: {', '.join(ROLES)}")
        entry = self._entry(id)
        # keyed by file and checksum: rows of one bench cell share their original and oracle, a replaced file is
        # read again
        key = (str(entry.files[role]), self.fingerprint(id, role)) if role in entry.files else (id, role)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        if role in entry.files:
            from ..modelio import load_model

            model = load_model(self._checked(entry.files[role]))
        elif entry.config is not None and role in ("original", "oracle"):
            with self._lock:
                building = self._building.setdefault(key, threading.Lock())
            with building:                     # one retraining per model, however many requests wait for it
                with self._lock:
                    if key in self._models:
                        return self._models[key]
                model = self._rebuilt(entry, role)
        else:
            raise ValueError(f"experiment {id} has no {role} model (has_model is false: only its scores are known)")
        model.eval()
        with self._lock:
            self._models[key] = model
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
        return model

    def has(self, id: str, role: str) -> bool:
        """Whether ``model(id, role)`` can give a model."""
        entry = self._entry(id)
        return role in entry.files or (entry.config is not None and role in ("original", "oracle"))

    def fingerprint(self, id: str, role: str = "model") -> str:
        """A checksum of the ``role`` model's weights (the one its sidecar or manifest records, with the files' sizes
        and modification times: see :func:`_file_checksum`), or for a model retrained on demand a hash of the config
        it is retrained from."""
        entry = self._entry(id)
        if role in entry.files:
            return _file_checksum(self._checked(entry.files[role]))
        if entry.config is not None and role in ("original", "oracle"):
            return "rebuilt-" + _hash({"config": entry.config, "role": role, "version": _version()})
        raise ValueError(f"experiment {id} has no {role} model")

    def _rebuilt(self, entry: _Entry, role: str) -> nn.Module:
        """A run's original (trained as ``expunge run`` trained it) or oracle (retrained from that original),
        saved under ``$EXPUNGE_CACHE/ui/models`` and read from there next time."""
        from .. import api
        from ..experiment import build_template
        from ..modelio import load_model, save_model

        cfg = entry.config
        path = cache_dir() / "models" / f"{_hash({'config': cfg, 'role': role, 'version': _version()})}.safetensors"
        if path.exists():          # a file, or a language model's directory
            try:
                return load_model(path)
            except ValueError as e:
                log.warning("rebuilding %s: %s", path, e)
        data = self.data(entry.row["id"])
        if role == "oracle":
            original = self.model(entry.row["id"], "original")
            model = api.unlearn(original, forget=data.forget, retain=data.retain, method="retrain",
                                seed=int(cfg["seed"]))
        else:
            template = build_template(cfg["model"], data.train)
            model = api.train(template, data.train, seed=int(cfg["seed"]), **cfg["train"])
        try:
            save_model(model, path, extra={"rebuilt": role, "experiment": entry.row["id"]})
        except (OSError, ValueError) as e:   # a read-only cache still gives the model
            log.warning("could not cache %s: %s", path, e)
        return model

    # ------------------------------------------------------------------------------------------------ data
    def data(self, id: str) -> ExperimentData:
        """Experiment ``id``'s data and forget/retain split, rebuilt from its recorded settings as the bench or
        run built them (cached in memory); ValueError when the row records none (an audit)."""
        entry = self._entry(id)
        req = entry.request
        if req is None:
            raise ValueError(f"experiment {id} records no data to rebuild")
        key = _hash(req.__dict__)
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        from ..data import split_forget
        from ..data.datasets import resolve
        from ..experiment import load_data, make_split, world_facts

        train, test = load_data(req.data, req.data_seed)
        if req.indices is not None:
            import numpy as np

            forget, retain = split_forget(train, indices=np.asarray(req.indices, dtype=np.int64))
        else:
            forget, retain = make_split(train, req.forget, req.split_seed)
        base, _ = resolve(train)
        names = getattr(base, "class_names", None)
        out = ExperimentData(train, test, forget, retain, [int(i) for i in forget.indices],
                             [int(i) for i in retain.indices], str(base.task),
                             list(names) if names is not None else None, world_facts(train))
        with self._lock:
            self._data[key] = out
            while len(self._data) > 4:
                self._data.popitem(last=False)
        return out

    def key(self, id: str) -> str:
        """A hash of what experiment ``id``'s views depend on besides its models: its data and forget request and
        the audit linked to it, by its contents (part of the views' cache keys)."""
        entry = self._entry(id)
        return _hash({"request": entry.request.__dict__ if entry.request else None,
                      "audit": _content_hash(entry.audit) if entry.audit else None})

    def audit_file(self, id: str) -> Path | None:
        """The ``audit.json`` of an audit of the same request as experiment ``id``, or None."""
        entry = self._entry(id)
        return entry.audit

    # ------------------------------------------------------------------------------------------- scanning
    def _refresh(self) -> None:
        sources: list[tuple[str, Path]] = []
        unknown = []
        for p in self.paths:
            skipped = len(unknown)
            found = _discover(p, unknown)
            sources += found
            if not found and p.name == "runs.db" and (p.parent / "grid.json").is_file():
                unknown.append(f"{p}: a bench's job store; give its directory {p.parent} instead")
            elif not found and len(unknown) == skipped:
                unknown.append(f"{p}: holds no bench directory (grid.json), run store (*.db) or audit (audit.json)")
        if self.store is not None:
            sources.append(("store", self.store))
        sources = list(dict.fromkeys(sources))
        # stores first: they name the bench and audit directories they recorded
        stores = [s for s in sources if s[0] == "store"]
        recorded: list[tuple[str, Path]] = []
        self.problems = unknown
        store_runs: dict[Path, list[dict[str, Any]]] = {}
        for _, path in stores:
            try:
                store_runs[path] = self._store(path)
            except (sqlite3.Error, ValueError, OSError) as e:
                self.problems.append(f"{path}: cannot be read as a run store ({e})")
                self._sources.pop(("store", path), None)
                store_runs[path] = []
        self._allowed = set()
        audit_configs: dict[str, dict[str, Any]] = {}
        for path in store_runs:
            scan = self._sources.get(("store", path))
            if scan is not None:
                self._allowed |= scan[1]["allowed"]
                audit_configs.update(scan[1]["audits"])
                recorded += scan[1]["recorded"]
        sources = list(dict.fromkeys(sources + recorded))
        slugs: dict[str, int] = {}
        entries: dict[str, _Entry] = {}
        for kind, path in sources:
            name = _SLUG.sub("-", path.stem if kind == "store" else path.name).strip("-") or kind
            slugs[(kind, name)] = slugs.get((kind, name), 0) + 1
            slug = name if slugs[(kind, name)] == 1 else f"{name}-{slugs[(kind, name)]}"
            try:
                if kind == "bench":
                    found = self._bench(path, slug)
                elif kind == "audit":
                    found = [_audit_entry(path, slug, audit_configs)]
                else:
                    found = self._runs(path, slug, store_runs.get(path, []))
            except (ValueError, OSError, sqlite3.Error, KeyError, TypeError, json.JSONDecodeError) as e:
                self.problems.append(f"{path}: cannot be read ({type(e).__name__}: {e})")
                continue
            for e in found:
                rid = e.row["id"]
                n = 2
                while rid in entries:
                    rid, n = f"{e.row['id']}-{n}", n + 1
                e.row["id"] = rid
                entries[rid] = e
        audits = {e.match: e.audit for e in entries.values() if e.row["kind"] == "audit" and e.match and e.audit}
        for e in entries.values():
            if e.row["kind"] != "audit":
                e.audit = audits.get(e.match) if e.match else None
                e.row["audit"] = e.audit is not None
        self._entries = entries

    def _store(self, path: Path) -> list[dict[str, Any]]:
        """The runs of the store at ``path`` (read again when the file changed), with what they record: the
        bench and audit directories to read, the files they wrote (allowed to load), the audits' configs."""
        sig = _signature(path, Path(f"{path}-wal"))
        cached = self._sources.get(("store", path))
        if cached is None or cached[0] != sig:
            runs = _read_store(path)
            scan: dict[str, Any] = {"runs": runs, "allowed": set(), "audits": {}, "recorded": []}
            for r in runs:
                out = r["params"].get("out")
                if r["kind"] == "bench" and isinstance(out, str) and (Path(out) / "grid.json").is_file():
                    scan["recorded"].append(("bench", Path(os.path.realpath(out))))
                    scan["allowed"].add(Path(os.path.realpath(out)))
                if r["kind"] == "audit":
                    scan["audits"][r["run_id"]] = r["params"]
                    if isinstance(out, str) and (Path(out) / "audit.json").is_file():
                        scan["recorded"].append(("audit", Path(os.path.realpath(out))))
                        scan["allowed"].add(Path(os.path.realpath(out)))
                if r["kind"] == "run":
                    scan["allowed"] |= {Path(os.path.realpath(a)) for a, kind in r["artifacts"].items()
                                        if kind in ROLES}
            cached = (sig, scan)
            self._sources[("store", path)] = cached
            self._sources.pop(("runs", path), None)
        return cached[1]["runs"]

    def _runs(self, path: Path, slug: str, runs: list[dict[str, Any]]) -> list[_Entry]:
        """The rows of the store's runs (kept until the store changes)."""
        sig = (self._sources[("store", path)][0], slug) if ("store", path) in self._sources else None
        cached = self._sources.get(("runs", path))
        if cached is None or cached[0] != sig or sig is None:
            cached = (sig, _run_entries(path, slug, runs))
            self._sources[("runs", path)] = cached
        return [_copy(e) for e in cached[1]]

    def _bench(self, path: Path, slug: str) -> list[_Entry]:
        sig = (_signature(path / "grid.json", path / "runs.db", path / "runs.db-wal", path / "results.json"), slug)
        cached = self._sources.get(("bench", path))
        if cached is not None and cached[0] == sig:
            return [_copy(e) for e in cached[1]]
        entries = _bench_entries(path, slug)
        self._sources[("bench", path)] = (sig, entries)
        return [_copy(e) for e in entries]


# ----------------------------------------------------------------------------------------------------- discovery
def _discover(path: Path, problems: list[str]) -> list[tuple[str, Path]]:
    """``(kind, path)`` of each source at ``path`` or one level below it; a child that is a symlink leading out of
    ``path`` is skipped and named in ``problems``."""
    def kind_of(p: Path) -> str | None:
        if p.is_dir():
            if _marker(p, "grid.json"):
                return "bench"
            if _marker(p, "audit.json"):
                return "audit"
            return None
        if p.is_file() and p.suffix in (".db", ".sqlite", ".sqlite3"):
            if p.name == "runs.db" and (p.parent / "grid.json").is_file():
                return None          # a bench's job store: read with its bench
            return "store"
        return None

    own = kind_of(path)
    if own is not None:
        return [(own, path)]
    if not path.is_dir():
        return []
    found = []
    top = Path(os.path.realpath(path))
    for child in sorted(path.iterdir()):
        k = kind_of(child)
        if k is None:
            continue
        real = Path(os.path.realpath(child))
        if not _inside(real, top):      # a symlink leading out of the given path: never read
            problems.append(f"{child}: a symlink leading out of {path}; skipped (give its target itself to read it)")
            continue
        found.append((k, real))
    return found


def _marker(directory: Path, name: str) -> bool:
    """Whether ``directory/name`` is a file that lies in ``directory`` itself (not a symlink leading out of it)."""
    f = directory / name
    return f.is_file() and _inside(Path(os.path.realpath(f)), Path(os.path.realpath(directory)))


def _read_store(path: Path) -> list[dict[str, Any]]:
    """Every run of ``path`` (read-only): id, name, kind, status, times, error, params (nested), metrics, tags,
    artifacts."""
    uri = "file:" + _quote(str(path)) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        runs = {r[0]: {"run_id": r[0], "name": r[1], "kind": r[2], "status": r[3], "start_time": r[4],
                       "end_time": r[5], "error": r[6], "parent_id": r[7], "params": {}, "metrics": {}, "tags": {},
                       "artifacts": {}}
                for r in db.execute("SELECT run_id, name, kind, status, start_time, end_time, error, parent_id "
                                    "FROM runs WHERE kind IN ('run', 'audit', 'bench') ORDER BY start_time")}
        wanted = "SELECT run_id FROM runs WHERE kind IN ('run', 'audit', 'bench')"
        flat: dict[str, dict[str, Any]] = {rid: {} for rid in runs}
        for rid, k, v in db.execute(f"SELECT run_id, key, value FROM params WHERE run_id IN ({wanted})"):
            try:
                flat[rid][k] = json.loads(v)
            except json.JSONDecodeError:
                flat[rid][k] = v
        for rid, k, v in db.execute(f"SELECT run_id, key, value FROM metrics WHERE run_id IN ({wanted}) "
                                    "ORDER BY step"):
            runs[rid]["metrics"][k] = float("nan") if v is None else float(v)
        for rid, k, v in db.execute(f"SELECT run_id, key, value FROM tags WHERE run_id IN ({wanted})"):
            runs[rid]["tags"][k] = v
        for rid, p, k in db.execute(f"SELECT run_id, path, kind FROM artifacts WHERE run_id IN ({wanted})"):
            runs[rid]["artifacts"][p] = k
    finally:
        db.close()
    for rid, params in flat.items():
        runs[rid]["params"] = unflatten(params)
    return list(runs.values())


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The run store's dotted parameter keys as nested dicts: {"train.lr": 0.1} -> {"train": {"lr": 0.1}}."""
    out: dict[str, Any] = {}
    for key in sorted(flat):
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        if isinstance(node.get(parts[-1]), dict) and isinstance(flat[key], dict) and not flat[key]:
            continue
        node[parts[-1]] = flat[key]
    return out


# ------------------------------------------------------------------------------------------------------ benches
def _bench_entries(path: Path, slug: str) -> list[_Entry]:
    from ..bench.grid import Grid

    grid = Grid.from_dict(json.loads((path / "grid.json").read_text()))
    records = {}
    if (path / "runs.db").is_file():
        records = _job_records(path / "runs.db")
    floors: dict[tuple[str, str], float | None] = {}
    results = path / "results.json"
    if results.is_file():
        try:
            for v in json.loads(results.read_text()).get("verdicts", []):
                floors[(v.get("setup"), v.get("scenario"))] = (v.get("noise_floor") or {}).get("avg_gap")
        except (json.JSONDecodeError, AttributeError):
            pass
    entries: list[_Entry] = []
    for cell in grid.cells:
        original, oracle = grid.jobs[cell.original], grid.jobs[cell.oracle]
        data, data_seed = original.spec["data"], int(original.spec["seed"])
        indices = None
        if "select" in oracle.deps:
            rec = records.get(oracle.deps["select"])
            if rec is None or rec["status"] != "FINISHED":
                indices = []          # the worst-case set is not selected yet: no split
            else:
                indices = [int(i) for i in json.loads(rec["tags"].get("result") or "{}").get("indices", [])]
        forget = oracle.spec["forget"]
        request = Request(data, data_seed, forget, int(forget.get("seed", oracle.spec["seed"])), indices)
        if indices == []:
            request = None
        floor = floors.get((cell.setup, cell.scenario))
        base = {"kind": "bench", "source": path.name, "scenario": cell.scenario, "seed": cell.seed,
                "setup": cell.setup}
        files = {"original": _cached(path, original), "oracle": _cached(path, oracle)}
        files = {k: v for k, v in files.items() if v is not None}
        oracle_rec = records.get(oracle.key)
        om = oracle_rec["metrics"] if oracle_rec else {}
        # the cell's original and oracle, scored as the oracle job scored them
        rows = [("original", f"{oracle.key}-original", original, {k[len("original_"):]: v for k, v in om.items()
                                                                   if k.startswith("original_")}, "original"),
                ("oracle", oracle.key, oracle, {k: v for k, v in om.items() if not k.startswith("original_")},
                 "oracle")]
        for method, key in cell.unlearn.items():
            rows.append((method, key, grid.jobs[key], None, "unlearn"))
        if cell.floor:
            rows.append(("oracle, other seed (floor)", cell.floor, grid.jobs[cell.floor], None, "unlearn"))
        for method, key, job, metrics, role in rows:
            rec = oracle_rec if role != "unlearn" else records.get(key)
            if metrics is None:
                metrics = rec["metrics"] if rec else {}
            if role == "unlearn":
                model_file = _cached(path, job)
                args = json.loads((rec or {}).get("tags", {}).get("result") or "{}").get("args", job.spec.get("args"))
            else:
                model_file = files.get(role)
                args = {}
            status = rec["status"] if rec else "PENDING"
            task = _task(metrics, data)
            has_model = model_file is not None and request is not None and status == "FINISHED"
            row = {"id": f"bench:{slug}:{key}", **base, "method": method, "args": args or {},
                   "task": task, "scores": _scores(metrics, floor), "tier": _tier(metrics), "status": status,
                   "error": rec["error"] if rec else None, "has_model": has_model,
                   "views": _views(task, has_model, "oracle" in files)}
            e = _Entry(row, request=request)
            if has_model:
                e.files = {**files, "model": model_file}
            if role == "unlearn" and request is not None:
                e.match = _match(data, data_seed, original.spec["model"], original.spec["recipe"], request,
                                 job.spec.get("method"), args or {})
            entries.append(e)
    return entries


def _job_records(db: Path) -> dict[str, dict[str, Any]]:
    """The bench's job records by job key (read-only)."""
    uri = "file:" + _quote(str(db)) + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        keys = dict(con.execute("SELECT run_id, value FROM tags WHERE key = 'job_key'"))
        out = {}
        for rid, status, error in con.execute("SELECT run_id, status, error FROM runs"):
            if rid in keys:
                out[rid] = {"status": status, "error": error, "metrics": {}, "tags": {}}
        for rid, k, v in con.execute("SELECT run_id, key, value FROM metrics ORDER BY step"):
            if rid in out:
                out[rid]["metrics"][k] = float("nan") if v is None else float(v)
        for rid, k, v in con.execute("SELECT run_id, key, value FROM tags WHERE key = 'result'"):
            if rid in out:
                out[rid]["tags"][k] = v
    finally:
        con.close()
    return {keys[rid]: rec for rid, rec in out.items()}


def _cached(bench: Path, job: Any) -> Path | None:
    """The job's cached model (a safetensors file with its sidecar, or a language model's directory), or None."""
    d = bench / "cache" / job.kind / job.key
    if d.is_dir() and (d / "config.json").is_file():
        return d
    f = bench / "cache" / job.kind / f"{job.key}.safetensors"
    return f if f.is_file() and f.with_suffix(".json").is_file() else None


# --------------------------------------------------------------------------------------------------------- runs
def _run_entries(path: Path, slug: str, runs: list[dict[str, Any]]) -> list[_Entry]:
    entries = []
    for r in runs:
        if r["kind"] != "run":
            continue
        p = r["params"]
        cfg = {k: p.get(k) for k in ("data", "model", "train", "forget", "method", "args", "seed", "scoring")}
        ok = all(isinstance(cfg[k], dict) for k in ("data", "model", "train", "forget"))
        seed = int(p.get("seed") or 0)
        cfg["args"] = cfg["args"] if isinstance(cfg["args"], dict) else {}
        cfg["seed"] = seed
        args = p.get("tuned_args") if isinstance(p.get("tuned_args"), dict) else cfg["args"]
        m = r["metrics"]
        files = {kind: Path(a) for a, kind in r["artifacts"].items() if kind in ROLES and Path(a).exists()}
        model_file = files.get("model")
        task = _task(m, cfg["data"] if ok else {})
        request = Request(cfg["data"], seed, cfg["forget"], seed) if ok else None
        has_model = model_file is not None and request is not None and r["status"] == "FINISHED"
        scenario = _describe_forget(cfg["forget"]) if ok else None
        row = {"id": f"run:{slug}:{r['run_id']}", "kind": "run", "source": path.name, "name": r["name"],
               "method": str(p.get("method") or r["name"]), "args": args or {}, "scenario": scenario, "seed": seed,
               "task": task, "scores": _scores(m, None), "tier": _tier(m),
               "status": r["status"], "error": r["error"], "has_model": has_model, "views": _views(task, has_model)}
        e = _Entry(row, request=request)
        if has_model:
            e.files = files          # the model; an image generator's run also saved its original and oracle
            e.config = {**cfg, "train": dict(cfg["train"])}
        if request is not None:
            e.match = _match(cfg["data"], seed, cfg["model"], cfg["train"], request, cfg["method"], args or {})
        entries.append(e)
    return entries


def _describe_forget(forget: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in forget.items())


# ------------------------------------------------------------------------------------------------------- audits
def _audit_entry(path: Path, slug: str, configs: dict[str, dict[str, Any]]) -> _Entry:
    f = path / "audit.json"
    if f.stat().st_size > 200_000_000:
        raise ValueError(f"{f} is larger than 200 MB")
    data = json.loads(f.read_text())
    summary = {k: (float("nan") if v is None else v) for k, v in (data.get("summary") or {}).items()
               if isinstance(v, (int, float)) or v is None}
    meta = data.get("meta") or {}
    params = configs.get(str(meta.get("run")))
    match = None
    scenario = None
    if params and all(isinstance(params.get(k), dict) for k in ("data", "model", "train", "forget")):
        seed = int(params.get("seed") or 0)
        request = Request(params["data"], seed, params["forget"], seed)
        match = _match(params["data"], seed, params["model"], params["train"], request, data.get("method"),
                       data.get("method_args") or {})
        scenario = _describe_forget(params["forget"])
    tier = data.get("evidence_tier")
    row = {"id": f"audit:{slug}", "kind": "audit", "source": path.name, "method": str(data.get("method")),
           "args": data.get("method_args") or {}, "scenario": scenario, "seed": data.get("seed"),
           "task": "classification", "scores": _scores(summary, None),
           "tier": int(tier) if isinstance(tier, (int, float)) else None, "status": "FINISHED", "error": None,
           "has_model": False, "views": [], "n_models": data.get("n_models"), "verdict": data.get("verdict")}
    return _Entry(row, match=match, audit=f)


def _match(data: Any, data_seed: int, model: Any, recipe: Any, request: Request, method: Any, args: Any) -> str:
    """A key shared by experiments of the same method and arguments on the same data, model, recipe and forget
    set (what an audit of the method on that request speaks about)."""
    recipe = {**_recipe_defaults(), **(recipe or {})}
    forget = dict(request.forget)
    if any(k in forget for k in ("fraction", "group_fraction")):
        forget["seed"] = request.split_seed
    return _hash({"data": data, "data_seed": data_seed, "model": model, "recipe": recipe, "forget": forget,
                  "indices": request.indices, "method": method, "args": args})


_RECIPE_DEFAULTS: dict[str, Any] = {}


def _recipe_defaults() -> dict[str, Any]:
    if not _RECIPE_DEFAULTS:
        import dataclasses

        from ..training import Recipe

        _RECIPE_DEFAULTS.update({f.name: f.default for f in dataclasses.fields(Recipe)})
    return _RECIPE_DEFAULTS


# ------------------------------------------------------------------------------------------------ small pieces
def _task(metrics: dict[str, float], data: dict[str, Any]) -> str:
    from ..config import data_task
    from ..verdict import task_of

    if metrics:
        return task_of(metrics)
    return data_task(data) or "classification"


def _views(task: str, has_model: bool, has_oracle: bool = True) -> list[str]:
    """The views a row supports: none without a model; the Attack view (the model against the oracle) only with
    an oracle."""
    if not has_model:
        return []
    return [v for v in VIEWS.get(task, []) if has_oracle or v != "attack"]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _scores(metrics: dict[str, float], floor: float | None) -> dict[str, float | None]:
    """The row's scores: UA, RA, TA, MIA, Avg. Gap, noise floor and seconds where measured (None elsewhere); for
    language and generation rows also the columns their reports show, and IAM's where it was asked for."""
    from ..report import GENERATION_COLUMNS, IAM_COLUMNS, LANGUAGE_COLUMNS, REGRESSION_COLUMNS
    from ..verdict import task_of

    out = {k: _num(metrics.get(m)) for k, m in SCORE_KEYS.items()}
    out["noise_floor"] = _num(floor)
    if metrics:
        task = task_of(metrics)
        # a generator's unlearning accuracy and retained-class generation accuracy are its UA and RA columns
        shown = dict(GENERATION_SCORE_KEYS) if task == "generation" else {}
        for column, key in shown.items():
            out[column] = _num(metrics.get(key))
        extra = {"language": LANGUAGE_COLUMNS, "generation": GENERATION_COLUMNS,
                 "regression": REGRESSION_COLUMNS}.get(task, [])
        for _, key in extra + IAM_COLUMNS:
            if key in metrics and key not in shown.values():
                out[key] = _num(metrics[key])
    return out


def _tier(metrics: dict[str, float]) -> int | None:
    v = _num(metrics.get("evidence_tier"))
    return None if v is None else int(v)


def _signature(*files: Path) -> tuple:
    out = []
    for f in files:
        try:
            s = f.stat()
            out.append((s.st_size, s.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


_CONTENT_HASHES: dict[Path, tuple[tuple, str]] = {}
_content_lock = threading.Lock()


def _content_hash(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes with its size and modification time, hashed again only when those change."""
    sig = _signature(path)
    with _content_lock:
        known = _CONTENT_HASHES.get(path)
    if known is not None and known[0] == sig:
        return known[1]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return _hash({"missing": str(path)})
    out = _hash({"sha256": digest.hexdigest(), "file": sig})
    with _content_lock:
        _CONTENT_HASHES[path] = (sig, out)
    return out


def _copy(e: _Entry) -> _Entry:
    return _Entry(json.loads(json.dumps(e.row)), dict(e.files), e.request, e.config, e.match, e.audit)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="/")


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _version() -> str:
    from .. import __version__

    return __version__


def _file_checksum(path: Path) -> str:
    """A hash of the weights' SHA-256 a safetensors sidecar records (or of a language model's manifest) together
    with the size and modification time of the files themselves.

    The recorded checksum is trusted, not recomputed (hashing every model file on every view request would cost more
    than the views): it tells models apart, and the files' sizes and modification times make a replaced file (one
    rewritten behind an unchanged sidecar, say) a new key, so the views are computed again and the file goes through
    :func:`expunge.load_model`'s checks before any cached result of the old file is served."""
    from ..modelio import LM_MANIFEST, sidecar_path

    try:
        if path.is_dir():
            manifest = path / LM_MANIFEST
            files = sorted(f for f in path.iterdir() if f.is_file())
            recorded = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
            return _hash({"manifest": recorded, "files": [(f.name, _signature(f)) for f in files]})
        meta = json.loads(sidecar_path(path).read_text())
        recorded = meta.get("weights_sha256") if isinstance(meta, dict) else None
        return _hash({"weights_sha256": recorded, "file": _signature(path)})
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return _hash({"weights_sha256": None, "file": _signature(path)})


def cache_dir() -> Path:
    """Where the comparator caches retrained models and computed views: ``$EXPUNGE_CACHE/ui`` (default
    ``~/.cache/expunge/ui``)."""
    root = os.environ.get("EXPUNGE_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "expunge") / "ui"


__all__ = ["Workspace", "Refused", "ExperimentData", "Request", "ROLES", "VIEWS", "COLUMNS", "cache_dir", "unflatten"]
