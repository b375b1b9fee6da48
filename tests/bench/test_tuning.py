"""Worst-case scenarios and fair tuning inside a bench: one study per method on a random forget set, its choice
reused on the random and the worst-case scenarios, stored and printed in the report."""
from __future__ import annotations

import json

import pytest

from expunge.bench import LocalEngine, load_bench, run_bench
from expunge.bench.jobs import load_data
from expunge.data.datasets import resolve
from expunge.experiment import make_split
from expunge.store import RunStore

from .tiny import tiny, write_config

pytest.importorskip("expunge.tuning")
pytest.importorskip("expunge.worst_case")

SPACE = [0.005, 0.05]


def test_tuned_once_reused_on_worst_case_and_reported(tmp_path):
    cfg = tiny(seeds=1, scenarios=[{"name": "random 10%", "fraction": 0.1},
                                   {"name": "worst 10%", "worst_case": {"fraction": 0.1, "method": "finetune"}}],
               tuning={"trials": 2, "methods": ["finetune"], "space": {"finetune": {"lr": SPACE}}})
    out = tmp_path / "o"
    spec = load_bench(write_config(tmp_path / "b.yaml", cfg))
    outcome = run_bench(spec, out=out, engine=LocalEngine(1))
    assert not outcome.failures and outcome.blocked == 0
    with RunStore(out / "runs.db") as s:
        recs = list(s.tagged("job_key").values())
    by_kind = {k: [r for r in recs if r.kind == k] for k in ("select", "tune", "unlearn", "oracle")}
    assert len(by_kind["tune"]) == 1 and len(by_kind["select"]) == 1
    assert len(by_kind["oracle"]) == 3          # random, worst-case, and the tuning set (another random 10%)
    tuned = json.loads(by_kind["tune"][0].tags["result"])
    assert tuned["best_args"]["lr"] in SPACE and tuned["best_args"]["epochs"] == 2   # epochs stays as configured
    assert len(tuned["trials"]) == 2
    # the worst-case set has the requested size and differs from the random one
    indices = json.loads(by_kind["select"][0].tags["result"])["indices"]
    assert len(indices) == 18                   # 10% of the 180 training rows
    train, _ = load_data(spec.setups[0].data, 0)
    random_forget, _ = make_split(train, {"fraction": 0.1, "seed": 0}, 0)
    assert set(indices) != set(resolve(random_forget)[1].tolist())
    sizes = {r.params["labels.scenario"]: r.metrics["forget_size"] for r in by_kind["oracle"]}
    assert sizes == {"random 10%": 18, "worst 10%": 18, "tuning for random 10%": 18}
    # both scenarios' finetune jobs used the tuned arguments; gradient_ascent kept its own
    for r in by_kind["unlearn"]:
        used = json.loads(r.tags["result"])["args"]
        if r.params["labels.method"] == "finetune":
            assert used == tuned["best_args"]
        else:
            assert used == {"epochs": 1, "lr": 0.01}
    md = (out / "report.md").read_text()
    assert md.count(f"tuned: {json.dumps(tuned['best_args'], sort_keys=True)}") == 2
    rows = json.loads((out / "results.json").read_text())["rows"]
    ft = [r for r in rows if r["method"] == "finetune"]
    assert len(ft) == 2 and all(r["tuned"]["best_args"] == tuned["best_args"] for r in ft)
