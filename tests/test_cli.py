"""The command line: demo end to end at reduced size, run, methods, runs; bad input -> one line, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from expunge.cli import main
from expunge.evaluate import TIER0_CAVEAT
from expunge.store import RunStore


def test_demo_end_to_end_reduced(tmp_path, store, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "8", "--methods", "finetune,random_label"]) == 0
    printed = capsys.readouterr().out
    assert "random 10% forgetting" in printed and "class-wise forgetting" in printed
    assert "oracle (target)" in printed and "random_label" in printed
    assert TIER0_CAVEAT in printed                                    # the evidence tier is stated
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    classwise = results["scenarios"]["class-wise forgetting (class 3)"]["mean"]
    assert classwise["oracle (target)"]["ua"] == pytest.approx(100.0)   # the oracle never saw class 3
    assert classwise["random_label"]["ua"] > 80
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "http" not in html.split("<body>")[1]
    assert main(["runs"]) == 0
    assert "demo" in capsys.readouterr().out


def test_run_records_and_shows(tmp_path, store, capsys):
    assert main(["run", "examples/digits_finetune.yaml", "train.epochs=5", "args.epochs=2",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    run_id = out.strip().split()[-1].rstrip(".")
    assert (tmp_path / "o" / "finetune.safetensors").exists()
    assert main(["runs", "show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "FINISHED" in shown and "gap_ua" in shown and "method = finetune" in shown


def test_methods_command_prints_reference_grid_and_deviations(capsys):
    import expunge
    from expunge.cli import method_deviations

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    infos = expunge.methods()
    for key in ("paper:", "reference:", "grid:", "deviations:", "defaults:"):
        assert out.count(key) == len(infos), key                 # one of each per method
    assert "reference: https://github.com/OPTML-Group/Unlearn-Sparse" in out
    assert "grid: {'lr': [0.001, 0.005, 0.01, 0.05, 0.1], 'epochs': [5, 10]}" in out          # finetune's grid
    # the deviations come from each method file's docstring
    assert method_deviations("random_label").startswith("Deviation, on purpose: the reference draws labels")
    assert method_deviations("bad_teacher").startswith("its ``F.kl_div``")
    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["ssd"]["deviations"] == method_deviations("ssd") and listed["ssd"]["reference"]


# -- exit codes: 0 success, 1 failure while working, 2 bad input, 130 Ctrl-C --------------------------------------

IRIS = ("data: {name: iris}\nmodel: {name: mlp, args: {hidden: [8]}}\ntrain: {epochs: 2}\n"
        "forget: {fraction: 0.1}\nmethod: finetune\nargs: {epochs: 1}\n")


def test_exit_code_1_for_a_run_that_diverges(tmp_path, store, capsys):
    (tmp_path / "c.yaml").write_text(IRIS)
    assert main(["run", str(tmp_path / "c.yaml"), "train.lr=1e6", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    with RunStore(store) as db:
        assert [r.status for r in db.runs()] == ["FAILED"]          # a failure while working is recorded


def test_exit_code_1_when_the_disk_fills_while_writing(tmp_path, store, capsys, monkeypatch):
    import errno

    import expunge.modelio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "finetune.safetensors"))

    monkeypatch.setattr(expunge.modelio, "_write_temp", full)      # every file write (model pairs, reports)
    (tmp_path / "c.yaml").write_text(IRIS)
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: No space left on device ({tmp_path / 'o' / 'finetune.safetensors'})"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())     # nothing half-written
    with RunStore(store) as db:
        assert [r.status for r in db.runs()] == ["FAILED"]          # a failure while working is recorded


def test_exit_code_1_for_a_bench_with_failed_jobs(tmp_path, store, capsys, monkeypatch):
    import expunge.bench
    from expunge.bench.runner import BenchOutcome

    def run_bench(spec, *, out, **kwargs):
        from expunge.bench import expand

        return BenchOutcome(out=out, grid=expand(spec), ran=2, failures=[("unlearn | finetune", "it failed")])

    monkeypatch.setattr(expunge.bench, "run_bench", run_bench)
    bench = tmp_path / "b.yaml"
    bench.write_text("name: b\ndata: {name: iris}\nscenarios: [{name: r, fraction: 0.1}]\n"
                     "methods: {finetune: {epochs: 1}}\n")
    assert main(["bench", str(bench), "--out", str(tmp_path / "out"), "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "error: 1 job(s) failed" in err and "unlearn | finetune: it failed" in err
    with RunStore(store) as db:
        assert [r.status for r in db.runs()] == ["FAILED"]


def test_exit_code_130_and_one_line_on_ctrl_c(tmp_path, store, capsys, monkeypatch):
    import expunge.experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(expunge.experiment, "run_experiment", interrupted)
    (tmp_path / "c.yaml").write_text(IRIS)
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "interrupted (Ctrl-C); exit code 130"


def test_exit_code_0_and_2_from_the_console_script(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "expunge.cli", "methods"], capture_output=True, text=True)
    assert ok.returncode == 0 and "finetune" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "expunge.cli", "demo", "--seeds", "0"], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "EXPUNGE_STORE": str(tmp_path / "r.db")})
    assert bad.returncode == 2 and bad.stderr.strip() == "error: seeds must be an integer >= 1; got 0"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["run", "missing.yaml"], "config file not found"),
    (["run", "examples/digits_finetune.yaml", "method=nope"], "config error at method"),
    (["run", "examples/digits_finetune.yaml", "args.lr=fast"], "config error at args.lr"),
    (["run", "examples/digits_finetune.yaml", "forget.fraction=2"], "config error at forget.fraction"),
    (["demo", "--methods", "nope"], "unknown method 'nope'"),
    (["demo", "--seeds", "0"], "seeds must be"),
    (["demo", "--epochs", "0"], "epochs must be an integer in 1.."),
    (["demo", "--model", "vit"], "unknown demo model 'vit'"),
    (["runs", "show", "doesnotexist"], "no run with id"),
    (["frobnicate"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    if argv[0] == "demo":
        argv = argv + ["--out", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    with RunStore(store) as db:
        assert db.runs() == []                  # nothing recorded either


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "expunge.cli", "run", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: config file not found")


def test_reading_commands_create_no_run_store(tmp_path, store, capsys):
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.strip() == f"No runs recorded in {store}."
    assert main(["runs", "show", "abc"]) == 2
    assert "there is no run store" in capsys.readouterr().err
    assert main(["report", "abc"]) == 2
    assert not store.exists()


def test_unexpected_errors_are_one_line_with_exit_code_1(tmp_path, store, capsys, monkeypatch):
    import expunge.experiment

    def broken(cfg):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(expunge.experiment, "prepare", broken)
    (tmp_path / "c.yaml").write_text(IRIS)
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip() == ("error: RuntimeError: something inside broke (set EXPUNGE_DEBUG=1 for "
                                               "the traceback)")
    monkeypatch.setenv("EXPUNGE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something inside broke"):
        main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")])
