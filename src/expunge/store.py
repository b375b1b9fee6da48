"""The run store: every CLI run recorded in one SQLite database, shaped like MLflow's tracking store.

Tables: ``runs`` (id, name, kind, status, start/end time, error), ``params`` (key/value per run), ``metrics``
(key/value/step per run), ``artifacts`` (files a run wrote), ``tags``. WAL mode, so readers never block the
writer. Only the driving process writes (workers return results to it).

A run tagged ``job_key`` is a benchmark job: at most one run may carry a given ``job_key`` (a unique index), and
:meth:`RunStore.record` writes a finished job (run, params, metrics, tags, artifacts) in one transaction, so a
process killed at any moment leaves either the whole record or nothing.

Location: the ``path`` argument, else the ``EXPUNGE_STORE`` environment variable, else ``~/.expunge/runs.db``.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ENV_VAR = "EXPUNGE_STORE"
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    start_time REAL NOT NULL, end_time REAL, error TEXT, parent_id TEXT);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT NOT NULL REFERENCES runs(run_id), key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id), key TEXT NOT NULL, value REAL, step INTEGER NOT NULL DEFAULT 0,
    timestamp REAL NOT NULL, PRIMARY KEY (run_id, key, step));
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id), path TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS tags (
    run_id TEXT NOT NULL REFERENCES runs(run_id), key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key));
CREATE INDEX IF NOT EXISTS runs_start ON runs(start_time);
CREATE UNIQUE INDEX IF NOT EXISTS tags_job_key ON tags(value) WHERE key = 'job_key';
"""


def default_path() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".expunge" / "runs.db"


@dataclass
class RunRecord:
    run_id: str
    name: str
    kind: str
    status: str
    start_time: float
    end_time: float | None
    error: str | None
    parent_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time


class DuplicateRunError(ValueError):
    """A run with the same ``job_key`` tag is already recorded."""


class RunStore:
    """A SQLite run store. Open with a path (or None for the default location)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"run store {self.path} cannot be opened as a SQLite database ({e})") from None
        except OSError as e:
            raise ValueError(f"run store {self.path} cannot be created ({e})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ----------------------------------------------------------------------------------------------
    def start_run(self, name: str, kind: str, *, params: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None, parent_id: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self._tx() as db:
            db.execute("INSERT INTO runs VALUES (?, ?, ?, 'RUNNING', ?, NULL, NULL, ?)",
                       (run_id, name, kind, time.time(), parent_id))
            self._put_params(db, run_id, params or {})
            db.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                           [(run_id, k, str(v)) for k, v in (tags or {}).items()])
        return run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        with self._tx() as db:
            self._put_params(db, run_id, params)

    @staticmethod
    def _put_params(db: sqlite3.Connection, run_id: str, params: dict[str, Any]) -> None:
        db.executemany("INSERT OR REPLACE INTO params VALUES (?, ?, ?)",
                       [(run_id, k, json.dumps(v, default=str)) for k, v in flatten(params).items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], *, step: int = 0) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                           [(run_id, k, float(v), step, now) for k, v in metrics.items()])

    def log_artifact(self, run_id: str, path: str | os.PathLike, kind: str = "file") -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?)", (run_id, str(path), kind))

    def end_run(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, end_time = ?, error = ? WHERE run_id = ?",
                       (status, time.time(), error, run_id))

    def record(self, name: str, kind: str, *, params: dict[str, Any] | None = None,
               metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
               artifacts: dict[str, str] | None = None, status: str = "FINISHED", error: str | None = None,
               start_time: float | None = None, end_time: float | None = None,
               parent_id: str | None = None) -> str:
        """Write a run that has already ended, with everything it produced, in one transaction.

        Raises :class:`DuplicateRunError` when ``tags`` carries a ``job_key`` that another run already has.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")
        run_id = uuid.uuid4().hex[:12]
        end = time.time() if end_time is None else end_time
        start = end if start_time is None else start_time
        try:
            with self._tx() as db:
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (run_id, name, kind, status, start, end, error, parent_id))
                self._put_params(db, run_id, params or {})
                db.executemany("INSERT INTO metrics VALUES (?, ?, ?, 0, ?)",
                               [(run_id, k, float(v), end) for k, v in (metrics or {}).items()])
                db.executemany("INSERT INTO tags VALUES (?, ?, ?)",
                               [(run_id, k, str(v)) for k, v in (tags or {}).items()])
                db.executemany("INSERT INTO artifacts VALUES (?, ?, ?)",
                               [(run_id, str(p), k) for p, k in (artifacts or {}).items()])
        except sqlite3.IntegrityError as e:
            raise DuplicateRunError(f"a run tagged job_key={(tags or {}).get('job_key')!r} is already recorded in "
                                    f"{self.path} ({e})") from None
        return run_id

    @contextmanager
    def run(self, name: str, kind: str, **kwargs: Any) -> Iterator[str]:
        """Start a run; mark it FINISHED on success (unless the body ended it itself, e.g. as FAILED because some
        of its jobs failed), FAILED (with the error) on an exception, KILLED on Ctrl-C."""
        run_id = self.start_run(name, kind, **kwargs)
        try:
            yield run_id
        except KeyboardInterrupt:
            self.end_run(run_id, "KILLED", "interrupted")
            raise
        except BaseException as e:
            self.end_run(run_id, "FAILED", f"{type(e).__name__}: {e}")
            raise
        with self._tx() as db:
            status = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        if status == "RUNNING":
            self.end_run(run_id, "FINISHED")

    # -- reading ----------------------------------------------------------------------------------------------
    def runs(self, *, limit: int = 50, kind: str | None = None) -> list[RunRecord]:
        q = "SELECT * FROM runs" + (" WHERE kind = ?" if kind else "") + " ORDER BY start_time DESC LIMIT ?"
        rows = self._db.execute(q, ((kind,) if kind else ()) + (limit,)).fetchall()
        return [RunRecord(*r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        """A run by id or unique id prefix, with its params, metrics, artifacts and tags."""
        rows = self._db.execute("SELECT * FROM runs WHERE run_id LIKE ?", (run_id + "%",)).fetchall()
        if not rows:
            raise ValueError(f"no run with id {run_id!r} in {self.path}")
        if len(rows) > 1:
            raise ValueError(f"run id prefix {run_id!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")
        rec = RunRecord(*rows[0])
        rid = rec.run_id
        rec.params = {k: json.loads(v) for k, v in self._db.execute(
            "SELECT key, value FROM params WHERE run_id = ? ORDER BY key", (rid,))}
        rec.metrics = {k: _metric(v) for k, v in self._db.execute(
            "SELECT key, value FROM metrics WHERE run_id = ? AND step = "
            "(SELECT MAX(step) FROM metrics m2 WHERE m2.run_id = metrics.run_id AND m2.key = metrics.key) "
            "ORDER BY key", (rid,))}
        rec.artifacts = dict(self._db.execute("SELECT path, kind FROM artifacts WHERE run_id = ?", (rid,)))
        rec.tags = dict(self._db.execute("SELECT key, value FROM tags WHERE run_id = ?", (rid,)))
        return rec

    def tagged(self, key: str) -> dict[str, RunRecord]:
        """Every run carrying tag ``key``, by the tag's value, with params, metrics, artifacts and tags loaded."""
        rows = self._db.execute("SELECT runs.*, tags.value FROM runs JOIN tags ON runs.run_id = tags.run_id "
                                "WHERE tags.key = ? ORDER BY runs.start_time", (key,)).fetchall()
        out = {r[-1]: RunRecord(*r[:-1]) for r in rows}
        by_id = {rec.run_id: rec for rec in out.values()}
        if not by_id:
            return out
        q = "SELECT run_id, key, value FROM {} WHERE run_id IN (SELECT run_id FROM tags WHERE key = ?)"
        for rid, k, v in self._db.execute(q.format("params"), (key,)):
            if rid in by_id:
                by_id[rid].params[k] = json.loads(v)
        for rid, k, v in self._db.execute(q.format("tags"), (key,)):
            if rid in by_id:
                by_id[rid].tags[k] = v
        for rid, k, v in self._db.execute("SELECT run_id, key, value FROM metrics WHERE run_id IN (SELECT run_id "
                                          "FROM tags WHERE key = ?) ORDER BY step", (key,)):
            if rid in by_id:
                by_id[rid].metrics[k] = _metric(v)
        for rid, p, k in self._db.execute("SELECT run_id, path, kind FROM artifacts WHERE run_id IN (SELECT run_id "
                                          "FROM tags WHERE key = ?)", (key,)):
            if rid in by_id:
                by_id[rid].artifacts[p] = k
        return out


def _metric(value: float | None) -> float:
    """A stored metric: SQLite stores NaN as NULL, read back as NaN."""
    return float("nan") if value is None else value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"train": {"lr": 0.1}} -> {"train.lr": 0.1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
