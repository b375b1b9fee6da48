"""The run store: every CLI run recorded in one SQLite database, shaped like MLflow's tracking store.

Tables: ``runs`` (id, name, kind, status, start/end time, error), ``params`` (key/value per run), ``metrics``
(key/value/step per run), ``artifacts`` (files a run wrote), ``tags``. WAL mode, so readers never block the
writer. Only the driving process writes (workers return results to it).

A run tagged ``job_key`` is a benchmark job: at most one run may carry a given ``job_key`` (a unique index), and
:meth:`RunStore.record` writes a finished job (run, params, metrics, tags, artifacts) in one transaction, so a
process killed at any moment leaves either the whole record or nothing.

A run started with :meth:`RunStore.start_run` records its owner (tags ``owner.host``, ``owner.pid``,
``owner.started``: the process's start time, so a reused pid is not mistaken for the owner). Opening the store marks
a RUNNING run whose owner process on this host has gone (killed by SIGKILL, crashed) as KILLED; runs owned by other
hosts are left as they are.

Opening checks the file (SQLite ``integrity_check``) and refuses a corrupt store or a file that is not SQLite; many
processes may create and open the same new store at once (a busy timeout, WAL set idempotently, the schema created
in one ``BEGIN IMMEDIATE`` transaction, retried while another process holds the lock).

Location: the ``path`` argument, else the ``EXPUNGE_STORE`` environment variable, else ``~/.expunge/runs.db``.
"""
from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ENV_VAR = "EXPUNGE_STORE"
STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")
BUSY_SECONDS = 60.0   # how long to wait for another process's lock

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


_SCHEMA_NAMES = {"runs", "params", "metrics", "artifacts", "tags", "runs_start", "tags_job_key"}


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
            self._db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"run store {self.path} cannot be opened as a SQLite database ({e})") from None
        except OSError as e:
            raise ValueError(f"run store {self.path} cannot be created ({e})") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise
        self.reap()

    def _open(self) -> None:
        """Check the file, switch to WAL and create the schema; retried while another process holds a lock."""
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                problems = [r[0] for r in db.execute("PRAGMA integrity_check(1)")]
                if problems != ["ok"]:
                    detail = " ".join(" ".join(problems).split())
                    raise ValueError(f"run store {self.path} is corrupt (SQLite integrity_check: {detail[:200]}); "
                                     "move it aside or give another --store")
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
                if _SCHEMA_NAMES <= {r[0] for r in db.execute("SELECT name FROM sqlite_master")}:
                    return
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise ValueError(f"run store {self.path} cannot be opened ({e})") from None
                time.sleep(random.uniform(0.005, 0.05))
            except sqlite3.DatabaseError as e:
                raise ValueError(f"run store {self.path} cannot be opened as a SQLite database ({e})") from None

    def reap(self) -> list[str]:
        """Mark RUNNING runs whose owner process on this host has ended (killed or crashed) as KILLED; their ids."""
        host = socket.gethostname()
        rows = self._db.execute(
            "SELECT runs.run_id, p.value, s.value FROM runs "
            "JOIN tags h ON h.run_id = runs.run_id AND h.key = 'owner.host' "
            "JOIN tags p ON p.run_id = runs.run_id AND p.key = 'owner.pid' "
            "LEFT JOIN tags s ON s.run_id = runs.run_id AND s.key = 'owner.started' "
            "WHERE runs.status = 'RUNNING' AND h.value = ?", (host,)).fetchall()
        dead = [(rid, pid) for rid, pid, started in rows if pid.isdigit() and not _alive(int(pid), started)]
        if not dead:
            return []
        try:
            with self._tx() as db:
                db.executemany("UPDATE runs SET status = 'KILLED', error = ? WHERE run_id = ? AND status = 'RUNNING'",
                               [(f"its process {pid} on {host} ended without finishing the run (killed or crashed)",
                                 rid) for rid, pid in dead])
        except sqlite3.OperationalError:   # a read-only store: report the runs as they are
            return []
        return [rid for rid, _ in dead]

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
                           [(run_id, k, str(v)) for k, v in {**(tags or {}), **owner()}.items()])
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
               parent_id: str | None = None, replace: bool = False) -> str:
        """Write a run that has already ended, with everything it produced, in one transaction.

        Raises :class:`DuplicateRunError` when ``tags`` carries a ``job_key`` that another run already has, unless
        ``replace``: then that run is deleted in the same transaction (a failed job run again).
        """
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")
        run_id = uuid.uuid4().hex[:12]
        end = time.time() if end_time is None else end_time
        start = end if start_time is None else start_time
        try:
            with self._tx() as db:
                if replace and (tags or {}).get("job_key") is not None:
                    self._delete_job(db, str(tags["job_key"]))
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

    @staticmethod
    def _delete_job(db: sqlite3.Connection, job_key: str) -> None:
        old = [r[0] for r in db.execute("SELECT run_id FROM tags WHERE key = 'job_key' AND value = ?", (job_key,))]
        for table in ("params", "metrics", "artifacts", "tags", "runs"):
            db.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(rid,) for rid in old])

    @contextmanager
    def run(self, name: str, kind: str, **kwargs: Any) -> Iterator[str]:
        """Start a run; mark it FINISHED on success (unless the body ended it itself, e.g. as FAILED because some
        of its jobs failed), FAILED (with the error) on an exception, KILLED on Ctrl-C."""
        run_id = self.start_run(name, kind, **kwargs)
        try:
            yield run_id
        except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM turned into Terminated
            self.end_run(run_id, "KILLED", str(e) or "interrupted")
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
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"a run id must be a non-empty string; got {run_id!r}")
        rows = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchall()
        if not rows:   # a prefix, matched literally (no LIKE wildcards: '%' and '_' are ordinary characters)
            rows = self._db.execute("SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id",
                                    (len(run_id), run_id)).fetchall()
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that open runs are marked KILLED on the way out."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: nothing changes)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def owner() -> dict[str, str]:
    """Tags naming this process: host, pid and start time."""
    return {"owner.host": socket.gethostname(), "owner.pid": str(os.getpid()),
            "owner.started": _process_start(os.getpid()) or ""}


def _process_start(pid: int) -> str | None:
    """An identifier of the process's start (boot id and start tick on Linux); None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":        # a zombie has ended
        return None
    return f"{boot}:{fields[19]}"


def _alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` of this host still exists and is the one that started at ``started``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # exists, owned by someone else
        pass
    except OSError:
        return True
    if started and Path("/proc/self/stat").exists():
        return _process_start(pid) == started
    return True


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


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
