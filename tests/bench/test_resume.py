"""Resuming: a bench killed with SIGKILL part-way and run again records every job exactly once, with the results
of an uninterrupted run; a finished bench reruns nothing; a lost cached model is rebuilt bitwise."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from expunge.bench import LocalEngine, load_bench, run_bench
from expunge.bench.grid import is_timing
from expunge.cli import main
from expunge.store import RunStore

from .tiny import tiny, write_config

# 3 seeds x (2 scenarios x 3 methods + 2 oracles + 1 original) = 27 jobs, about a second of work in all
CONFIG = tiny(seeds=3, methods={"finetune": {"epochs": 2, "lr": 0.05}, "gradient_ascent": {"epochs": 1, "lr": 0.01},
                                "random_label": {"epochs": 2, "lr": 0.02}})


def job_counts(db_path) -> dict[str, int]:
    with sqlite3.connect(db_path, timeout=30) as db:
        return dict(db.execute("SELECT value, COUNT(*) FROM tags WHERE key = 'job_key' GROUP BY value"))


def results(db_path) -> dict[str, tuple]:
    """Per job key: status and every metric that does not measure wall time."""
    with RunStore(db_path) as s:
        return {k: (r.status, {m: v for m, v in r.metrics.items() if not is_timing(m)})
                for k, r in s.tagged("job_key").items()}


def test_sigkill_then_resume_completes_with_nothing_lost_or_duplicated(tmp_path):
    cfg = write_config(tmp_path / "bench.yaml", CONFIG)
    out, db = tmp_path / "killed", tmp_path / "killed" / "runs.db"
    env = {**os.environ, "EXPUNGE_STORE": str(tmp_path / "global.db")}
    proc = subprocess.Popen([sys.executable, "-m", "expunge.cli", "bench", str(cfg), "--out", str(out),
                             "--workers", "1", "--no-report"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if db.exists() and sum(job_counts(db).values()) >= 5:
                    break
            except sqlite3.OperationalError:    # the schema is being created
                pass
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    total = 27
    at_kill = job_counts(db)
    assert 5 <= sum(at_kill.values()) < total          # killed part-way
    before = results(db)
    for path in (db, tmp_path / "global.db"):          # its runs do not stay RUNNING: the owner is gone
        with RunStore(path) as s:
            bench_run = s.runs(kind="bench")[0]
        assert bench_run.status == "KILLED" and f"process {proc.pid}" in bench_run.error

    assert main(["bench", str(cfg), "--out", str(out), "--workers", "1", "--no-report"]) == 0
    counts = job_counts(db)
    assert len(counts) == total and set(counts.values()) == {1}
    after = results(db)
    assert {k: after[k] for k in before} == before     # recorded jobs were kept, not rerun

    reference = run_bench(load_bench(cfg), out=tmp_path / "straight", engine=LocalEngine(1), report=False)
    assert reference.ran == total
    assert results(tmp_path / "straight" / "runs.db") == after


def test_finished_bench_reruns_nothing_and_rebuilds_a_lost_model(tmp_path):
    spec = load_bench(write_config(tmp_path / "b.yaml", tiny(seeds=1)))
    first = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert (first.ran, first.reused) == (7, 0)
    again = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert (again.ran, again.reused) == (0, 7)

    # a new method needs the cached oracle; delete it: it is rebuilt (not re-recorded) from the cached original
    oracle = next(p for p in (tmp_path / "o" / "cache" / "oracle").glob("*.safetensors"))
    data = oracle.read_bytes()
    oracle.unlink()
    spec.methods["random_label"] = {"epochs": 1, "lr": 0.02}
    more = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert (more.ran, more.reused) == (2, 7)
    assert oracle.read_bytes() == data
    assert set(job_counts(tmp_path / "o" / "runs.db").values()) == {1}


def test_one_driver_per_directory(tmp_path):
    from expunge.bench.runner import _exclusive

    spec = load_bench(write_config(tmp_path / "b.yaml", tiny(seeds=1)))
    (tmp_path / "o").mkdir()
    with _exclusive(tmp_path / "o"):
        with pytest.raises(ValueError, match="another expunge bench is running"):
            run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)


def test_refusals_are_recorded_and_other_errors_retried(tmp_path, monkeypatch):
    from expunge.bench import jobs
    from expunge.bench.report import collect, summary_rows

    # laf refuses a model without the named extractor: a final outcome, recorded once, shown as failed
    spec = load_bench(write_config(tmp_path / "b.yaml", tiny(seeds=1, methods={"laf": {"extractor": "nope"},
                                                                                "finetune": {}})))
    real = jobs.RUNNERS["unlearn"]

    def flaky(p):
        if p["method"] == "finetune":
            raise OSError("worker lost its disk")
        return real(p)

    monkeypatch.setitem(jobs.RUNNERS, "unlearn", flaky)
    first = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert len(first.failures) == 2 and "worker lost its disk" in first.failures[0][1]
    assert first.ran == 5                        # original, 2 oracles, 2 refused laf jobs
    monkeypatch.setitem(jobs.RUNNERS, "unlearn", real)
    second = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert (second.ran, second.reused, second.failures) == (2, 5, [])
    results = collect(tmp_path / "o")
    sec = results.sections[0]
    assert sec.rows["laf"] == [{"failed": 1.0}] and any("nope" in n for n in sec.notes)
    laf = next(r for r in summary_rows(results) if r["method"] == "laf")
    assert (laf["seeds"], laf["finished"], laf["mean"]) == (1, 0, {})
    from expunge.report import text_table

    assert "failed" in next(line for line in text_table(sec.rows).splitlines() if line.startswith("laf"))


def test_permanent_failures_are_recorded_and_rerun_only_when_asked(tmp_path, monkeypatch, store, capsys):
    """A class that does not exist, a diverging run and bad arguments fail the same way on every run: recorded as
    failed, reported as permanent, not run again by a rerun; ``--retry-failed`` runs them again."""
    from expunge.bench import jobs
    from expunge.training import DivergenceError

    cfg = write_config(tmp_path / "b.yaml", tiny(seeds=1, scenarios=[
        {"name": "random 10%", "fraction": 0.1}, {"name": "class 99", "classes": [99]}]))
    real = jobs.RUNNERS["unlearn"]

    def failing(p):
        if p["method"] == "gradient_ascent":
            raise DivergenceError("loss is nan at epoch 1, step 3")
        if p["method"] == "finetune":
            raise TypeError("finetune got an unexpected argument 'lrr'")
        return real(p)

    monkeypatch.setitem(jobs.RUNNERS, "unlearn", failing)
    spec = load_bench(cfg)
    first = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    # original and random-10% oracle run; the class-99 oracle fails and blocks its two methods; both methods fail
    assert (first.ran, first.blocked, first.failures) == (5, 2, [])
    bad_type, absent_class, diverged = sorted(e for _, e in first.permanent)
    assert bad_type.startswith("TypeError: finetune got an unexpected argument")
    assert "class(es) [99] do not occur in the data" in absent_class
    assert diverged.startswith("diverged: loss is nan")

    assert main(["bench", str(cfg), "--out", str(tmp_path / "o"), "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "ran 0 jobs, reused 5" in err and "3 permanent: recorded, not retried; --retry-failed" in err
    assert "rerun to retry" not in err

    monkeypatch.setitem(jobs.RUNNERS, "unlearn", real)          # the methods are fixed; the class still absent
    again = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False, retry_failed=True)
    assert (again.ran, again.reused, again.blocked) == (3, 2, 2)
    assert [e for _, e in again.permanent] == [absent_class]
    counts = job_counts(tmp_path / "o" / "runs.db")
    assert len(counts) == 5 and set(counts.values()) == {1}       # replaced, not duplicated


def test_transient_and_permanent_errors_are_told_apart():
    from expunge.bench.jobs import is_permanent
    from expunge.training import DivergenceError

    for e in (ValueError("x"), TypeError("x"), DivergenceError("x"), KeyError("x"), RuntimeError("shape"),
              ZeroDivisionError()):
        assert is_permanent(e), e
    for e in (OSError(28, "No space left on device"), MemoryError(), TimeoutError(), ConnectionResetError(),
              RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")):
        assert not is_permanent(e), e


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_cached_model_is_rebuilt(tmp_path, damage):
    spec = load_bench(write_config(tmp_path / "b.yaml", tiny(seeds=1)))
    run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    oracle = next((tmp_path / "o" / "cache" / "oracle").glob("*.safetensors"))
    data = oracle.read_bytes()
    if damage == "truncate":
        oracle.write_bytes(data[: len(data) // 2])
    else:
        oracle.write_bytes(data[:-7] + bytes([data[-7] ^ 0x01]) + data[-6:])
    spec.methods["random_label"] = {"epochs": 1, "lr": 0.02}          # new jobs that need the damaged oracle
    more = run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert (more.ran, more.reused, more.failures, more.permanent) == (2, 7, [], [])
    assert oracle.read_bytes() == data                                 # rebuilt bitwise
    assert set(job_counts(tmp_path / "o" / "runs.db").values()) == {1}


def test_sigterm_marks_the_bench_run_killed(tmp_path, monkeypatch):
    from expunge.bench import jobs
    from expunge.store import Terminated

    real = jobs.RUNNERS["unlearn"]

    def terminated(p):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)                                     # the handler interrupts this
        return real(p)

    monkeypatch.setitem(jobs.RUNNERS, "unlearn", terminated)
    before = signal.getsignal(signal.SIGTERM)
    spec = load_bench(write_config(tmp_path / "b.yaml", tiny(seeds=1)))
    start = time.monotonic()
    with pytest.raises(Terminated):
        run_bench(spec, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert time.monotonic() - start < 8
    assert signal.getsignal(signal.SIGTERM) == before
    with RunStore(tmp_path / "o" / "runs.db") as s:
        run = s.runs(kind="bench")[0]
        assert (run.status, run.error) == ("KILLED", "terminated by signal 15")
        assert {r.status for r in s.tagged("job_key").values()} == {"FINISHED"}   # the jobs that ended are kept
