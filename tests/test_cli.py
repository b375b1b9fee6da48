"""The command line: demo end to end at reduced size, run, methods, runs; bad input -> one line, exit 2."""
from __future__ import annotations

import json
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


def test_methods_command(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "finetune" in out and "neggrad_plus" in out and "paper:" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "missing.yaml"], "config file not found"),
    (["run", "examples/digits_finetune.yaml", "method=nope"], "config error at method"),
    (["run", "examples/digits_finetune.yaml", "args.lr=fast"], "config error at args.lr"),
    (["run", "examples/digits_finetune.yaml", "forget.fraction=2"], "config error at forget.fraction"),
    (["demo", "--methods", "nope"], "unknown method 'nope'"),
    (["demo", "--seeds", "0"], "seeds must be"),
    (["demo", "--epochs", "0"], "epochs must be an integer >= 1"),
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
