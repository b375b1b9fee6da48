"""The SQLite run store."""
from __future__ import annotations

import math

import pytest

from expunge.store import DuplicateRunError, RunStore, default_path


def test_runs_params_metrics_artifacts(tmp_path):
    with RunStore(tmp_path / "r.db") as db:
        with db.run("exp", "run", params={"train": {"lr": 0.1}, "method": "finetune"}) as rid:
            db.log_metrics(rid, {"ua": 3.5})
            db.log_metrics(rid, {"ua": 4.5}, step=1)
            db.log_artifact(rid, "/tmp/m.safetensors", "model")
        rec = db.get(rid[:6])
        assert rec.status == "FINISHED" and rec.seconds is not None
        assert rec.params == {"train.lr": 0.1, "method": "finetune"}
        assert rec.metrics == {"ua": 4.5} and rec.artifacts == {"/tmp/m.safetensors": "model"}
        assert [r.run_id for r in db.runs()] == [rid]
        mode = db._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_failures_are_recorded(tmp_path):
    with RunStore(tmp_path / "r.db") as db:
        with pytest.raises(RuntimeError):
            with db.run("bad", "run") as rid:
                raise RuntimeError("boom")
        rec = db.get(rid)
        assert rec.status == "FAILED" and "boom" in rec.error
        with pytest.raises(ValueError, match="no run"):
            db.get("zzzz")


def test_a_status_set_by_the_body_is_kept(tmp_path):
    """A bench whose jobs partly failed ends its own run as FAILED; leaving the block must not overwrite that."""
    with RunStore(tmp_path / "r.db") as db:
        with db.run("bench", "bench") as rid:
            db.end_run(rid, "FAILED", "2 job(s) failed")
        rec = db.get(rid)
        assert rec.status == "FAILED" and rec.error == "2 job(s) failed"


def test_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPUNGE_STORE", str(tmp_path / "env.db"))
    assert default_path() == tmp_path / "env.db"
    with RunStore() as db:
        assert db.path == tmp_path / "env.db"


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="cannot be opened"):
        RunStore(p)


def test_record_writes_a_finished_job_whole_and_once(tmp_path):
    with RunStore(tmp_path / "r.db") as db:
        rid = db.record("job", "unlearn", params={"spec": {"lr": 0.1}}, metrics={"ua": 2.0, "rte": float("nan")},
                        tags={"job_key": "k1", "result": "{}"}, artifacts={"/tmp/m.safetensors": "model"},
                        start_time=10.0, end_time=12.5)
        rec = db.get(rid)
        assert rec.status == "FINISHED" and rec.seconds == 2.5 and rec.params == {"spec.lr": 0.1}
        assert rec.metrics["ua"] == 2.0 and math.isnan(rec.metrics["rte"])     # SQLite's NULL read back as NaN
        assert rec.artifacts == {"/tmp/m.safetensors": "model"} and rec.tags["job_key"] == "k1"
        jobs = db.tagged("job_key")
        assert list(jobs) == ["k1"] and jobs["k1"].run_id == rid and math.isnan(jobs["k1"].metrics["rte"])
        rows = lambda: [db._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                        for t in ("runs", "params", "metrics", "tags", "artifacts")]
        before = rows()
        with pytest.raises(DuplicateRunError, match="job_key='k1'"):
            db.record("again", "unlearn", metrics={"ua": 9.0}, tags={"job_key": "k1"})
        with pytest.raises(ValueError):                   # fails part-way (a metric that is not a number)
            db.record("bad", "unlearn", params={"x": 1}, metrics={"ua": "high"}, tags={"job_key": "k2"})
        assert rows() == before                           # neither left anything behind
        with pytest.raises(ValueError, match="unknown run status 'DONE'"):
            db.record("x", "run", status="DONE")


def test_a_corrupt_store_is_refused_in_one_line(tmp_path):
    p = tmp_path / "r.db"
    with RunStore(p) as db:
        for i in range(300):
            db.record(f"job {i}", "unlearn", params={"x": "y" * 200}, tags={"job_key": f"k{i}"})
    data = bytearray(p.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[5 * page: 5 * page + 1200] = b"\xa5" * 1200     # scribble over a page in the middle
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"run store .*r\.db (is corrupt|cannot be opened)") as info:
        RunStore(p)
    assert "\n" not in str(info.value)


def test_run_ids_match_literally_never_by_wildcard(tmp_path):
    with RunStore(tmp_path / "r.db") as db:
        rid = db.start_run("a", "run")
        other = db.start_run("b", "run")
        assert db.get(rid).run_id == rid and db.get(rid[:8]).run_id == rid
        for pattern in ("%", "_", rid[:3] + "%", "_" + rid[1:], "%" + rid[-3:]):
            with pytest.raises(ValueError, match="no run with id"):
                db.get(pattern)
        with pytest.raises(ValueError, match="non-empty"):
            db.get("")
        assert other != rid


def test_cli_runs_show_does_not_expand_wildcards(tmp_path, capsys):
    from expunge.cli import main

    with RunStore(tmp_path / "r.db") as db:
        db.start_run("a", "run")
    assert main(["runs", "show", "%", "--store", str(tmp_path / "r.db")]) == 2
    assert "no run with id '%'" in capsys.readouterr().err


def _start_and_die(path):
    """In a child process: start a run, then die by SIGKILL without ending it."""
    import os
    import signal

    with RunStore(path) as db:
        db.start_run("doomed", "bench")
    os.kill(os.getpid(), signal.SIGKILL)


def test_runs_of_a_dead_process_are_marked_killed(tmp_path):
    import multiprocessing

    path = tmp_path / "r.db"
    with RunStore(path) as db:
        mine = db.start_run("alive", "bench")          # this process is alive: its run stays RUNNING
        reused = db.start_run("reused pid", "bench")
        db._db.execute("UPDATE tags SET value = 'another-boot:1' WHERE run_id = ? AND key = 'owner.started'",
                       (reused,))                       # this pid, but a process that started at another time
    child = multiprocessing.get_context("fork").Process(target=_start_and_die, args=(path,))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    with RunStore(path) as db:
        runs = {r.name: r for r in db.runs()}
    assert runs["alive"].status == "RUNNING" and runs["alive"].run_id == mine
    assert runs["doomed"].status == "KILLED" and f"process {child.pid} " in runs["doomed"].error
    assert runs["doomed"].end_time is None                # when it died is not known
    assert runs["reused pid"].status == "KILLED"


def test_sigterm_ends_open_runs_as_killed(tmp_path):
    import os
    import signal
    import time

    from expunge.store import Terminated, terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with RunStore(tmp_path / "r.db") as db:
        with pytest.raises(Terminated):
            with terminate_as_interrupt(), db.run("bench", "bench") as rid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        rec = db.get(rid)
    assert (rec.status, rec.error) == ("KILLED", "terminated by signal 15")
    assert signal.getsignal(signal.SIGTERM) == before


def _open_and_write(path, barrier, results):
    barrier.wait()
    try:
        with RunStore(path) as db:
            db.start_run("concurrent", "run")
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(f"{type(e).__name__}: {e}")


def test_many_processes_create_the_same_new_store_at_once(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    n = 32
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_and_write, args=(tmp_path / "new.db", barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes == ["ok"] * n
    with RunStore(tmp_path / "new.db") as db:
        assert len(db.runs(limit=100)) == n
