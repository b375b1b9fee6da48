"""The SQLite run store."""
from __future__ import annotations

import sqlite3

import pytest

from expunge.store import RunStore, default_path


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
