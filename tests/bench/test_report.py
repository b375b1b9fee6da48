"""Bench reports (Markdown, self-contained HTML with inline plots, JSON rows of mean and std over seeds),
``expunge report`` and ``expunge runs compare``."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import statistics
from html import escape

import pytest

from expunge.cli import main
from expunge.evaluate import TIER0_CAVEAT
from expunge.store import RunStore

from .tiny import tiny, write_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    """Two benches that differ only in finetune's learning rate, both run through the command line."""
    root = tmp_path_factory.mktemp("benches")
    store = root / "global.db"
    outs = []
    for name, lr in (("a", 0.05), ("b", 0.2)):
        cfg = write_config(root / f"{name}.yaml", tiny(name=name, methods={
            "finetune": {"epochs": 2, "lr": lr}, "gradient_ascent": {"epochs": 1, "lr": 0.01}}))
        assert main(["bench", str(cfg), "--out", str(root / name), "--workers", "1", "--store", str(store)]) == 0
        outs.append(root / name)
    return outs[0], outs[1], store


def test_files_tables_and_plots(benches):
    out = benches[0]
    md = (out / "report.md").read_text()
    assert "| Method | UA | RA | TA | MIA | Avg.Gap | x floor | RTE % | seconds | tier | verdict |" in md
    assert "| oracle, other seed (floor) |" in md and "| original |" in md     # noise floor and doing nothing
    assert "Noise floor (Avg.Gap between oracles of different seeds)" in md
    assert md.count(" (best) |") == 2                                         # one best method per section
    assert re.search(r"forget set: \d+ of \d+ training examples \(\d+\.\d%\); retain \d+", md)   # its size stated
    assert md.count("log scale") == 2 and md.count("*Each panel: one metric") == 2   # captions under the plots
    assert "## classification: random 10%" in md and "## classification: class 0" in md
    assert "finetune: {\"epochs\": 2, \"lr\": 0.05}" in md
    plots = sorted((out / "plots").glob("*.png"))
    assert len(plots) == 4 and all(p.read_bytes().startswith(PNG) for p in plots)   # pareto + bars, 2 sections
    assert all(f"]({p.relative_to(out).as_posix()})" in md for p in plots)
    html = (out / "report.html").read_text()
    body = html.split("<body>", 1)[1]
    assert body.count("src='data:image/png;base64,") == 4
    assert "http" not in body and "plots/" not in body          # nothing fetched: the file stands alone
    assert "tier" in body and "oracle (target)" in body
    assert body.count("<figcaption>") == 4 and "class='best'" in body
    assert TIER0_CAVEAT in md and escape(TIER0_CAVEAT) in body     # every report states its evidence tier


def test_results_json_has_mean_and_std_over_seeds(benches):
    out = benches[0]
    data = json.loads((out / "results.json").read_text())
    assert data["wall_seconds"] > 0 and data["jobs"]["finished"] == data["jobs"]["total"] == 14
    assert data["evidence_tier"] == 0 and data["caveat"] == TIER0_CAVEAT
    assert all(r["mean"]["evidence_tier"] == 0 for r in data["rows"] if r["method"] not in ("original", "oracle"))
    rows = {(r["scenario"], r["method"]): r for r in data["rows"]}
    assert set(rows) == {(s, m) for s in ("random 10%", "class 0")
                         for m in ("original", "oracle", "finetune", "gradient_ascent")}
    # the row's mean and std are those of the per-seed jobs in the store
    with RunStore(out / "runs.db") as s:
        recs = [r for r in s.tagged("job_key").values() if r.kind == "unlearn"
                and r.params["labels.method"] == "finetune" and r.params["labels.scenario"] == "class 0"]
    ua = [r.metrics["ua"] for r in recs]
    row = rows[("class 0", "finetune")]
    assert row["seeds"] == 2 and row["args"] == {"epochs": 2, "lr": 0.05}
    assert row["mean"]["ua"] == pytest.approx(statistics.mean(ua))
    assert row["std"]["ua"] == pytest.approx(statistics.stdev(ua))
    assert rows[("class 0", "oracle")]["mean"]["ua"] == pytest.approx(100.0)    # the oracle never saw class 0
    assert rows[("class 0", "original")]["mean"]["ua"] < 80                   # the original did
    assert all(v is None or math.isfinite(v) for r in data["rows"] for v in r["mean"].values())
    # verdicts per section: the floor from the two seeds' oracles, the best method, a verdict for each method
    verdicts = {v["scenario"]: v for v in data["verdicts"]}
    assert set(verdicts) == {"random 10%", "class 0"}
    for v in verdicts.values():
        assert v["noise_floor"]["oracle_pairs"] == 1 and v["noise_floor"]["avg_gap"] >= 0.5
        assert set(v["verdicts"]) == {"finetune", "gradient_ascent"} and v["best"] in v["verdicts"]
        assert all(isinstance(x["verdict"], str) and x["kept"] in (True, False) for x in v["verdicts"].values())
    best = verdicts["class 0"]["best"]
    assert rows[("class 0", best)]["mean"]["avg_gap"] == min(rows[("class 0", m)]["mean"]["avg_gap"]
                                                             for m in ("finetune", "gradient_ascent"))


def test_report_command_rewrites_a_bench_and_finds_it_by_run_id(benches, tmp_path, capsys):
    out, _, store = benches
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "classification: class 0" in printed and "gradient_ascent" in printed and TIER0_CAVEAT in printed
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"report.md", "report.html", "results.json", "plots"}
    with RunStore(store) as db:
        bench_run = next(r for r in db.runs(kind="bench") if r.name == "a")
    assert main(["report", bench_run.run_id, "--store", str(store), "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "report.html").is_file()


def test_mlflow_export_missing_says_how_to_install(benches, capsys):
    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed")
    assert main(["report", str(benches[0]), "--mlflow"]) == 2
    assert "pip install mlflow" in capsys.readouterr().err


def test_runs_compare_two_benches(benches, capsys):
    a, b, _ = benches
    assert main(["runs", "compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    rows = {cells[0]: cells[1:6] for cells in (re.split(r"\s{2,}", line) for line in text.splitlines())
            if len(cells) == 7 and " | " in cells[0] and not cells[0].startswith("setup")}
    assert len(rows) == 8
    # gradient_ascent's jobs are the same jobs (same keys) in both benches: UA, RA, TA, MIA, Avg.Gap agree
    assert all(c.endswith(" / +0.00") for c in rows["classification | random 10% | gradient_ascent"])
    assert not all(c.endswith(" / +0.00") for c in rows["classification | random 10% | finetune"])
    assert "arguments differ for classification | random 10% | finetune" in text


def test_runs_compare_two_runs(tmp_path, capsys):
    db_path = tmp_path / "r.db"
    with RunStore(db_path) as db:
        a = db.record("x", "run", params={"method": "finetune", "args": {"lr": 0.1}}, metrics={"ua": 2.0, "ra": 99})
        b = db.record("x", "run", params={"method": "finetune", "args": {"lr": 0.2}}, metrics={"ua": 5.5, "ra": 99})
    assert main(["runs", "compare", a, b, "--store", str(db_path)]) == 0
    text = capsys.readouterr().out
    assert "args.lr" in text and "method" not in text.split("metrics:")[0].split("differ:")[1]
    ua = next(line for line in text.splitlines() if line.startswith("ua"))
    assert ua.split()[1:] == ["2.00", "5.50", "+3.50"]


def test_report_command_for_a_single_run(tmp_path, store, capsys):
    assert main(["run", "examples/digits_finetune.yaml", "train.epochs=3", "args.epochs=1",
                 "--out", str(tmp_path / "m")]) == 0
    run_id = capsys.readouterr().out.strip().split()[-1].rstrip(".")
    assert main(["report", run_id, "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "forget fraction=0.1" in printed and "finetune" in printed and "oracle (target)" in printed
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    means = data["scenarios"]["forget fraction=0.1"]["mean"]
    with RunStore(store) as db:
        rec = db.get(run_id)
    assert means["finetune"]["ua"] == pytest.approx(rec.metrics["ua"])
    assert means["oracle (target)"]["ua"] == pytest.approx(rec.metrics["oracle_ua"])
