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
