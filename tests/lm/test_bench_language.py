"""The bench on the language task: a tiny fictitious-authors grid runs end to end (original, oracle, a second
oracle for the noise floor, tuning on other authors, two methods, one a LoRA variant) and reports the language
table with the oracle's own rows and the do-nothing row; tuning never sees an evaluated author."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from expunge.bench import LocalEngine, expand, parse_bench, run_bench  # noqa: E402
from expunge.config import ConfigError  # noqa: E402
from expunge.verdict import FLOOR, ORACLE, ORIGINAL  # noqa: E402

TINY_AUTHORS = {
    "name": "tiny-authors",
    "seeds": 1,
    "data": {"name": "authors", "args": {"n_authors": 10, "attributes": 1, "world_facts": 3, "vocab_size": 300,
                                         "perturbed": 2}},
    "model": {"name": "llama", "args": {"hidden": 32, "layers": 2, "heads": 2, "max_positions": 64}},
    "train": {"epochs": 10, "lr": 0.01, "batch_size": 16},
    "scenarios": [{"name": "forget 20%", "group_fraction": 0.2}],
    "methods": {"grad_ascent": {"epochs": 1}, "npo+lora": {"epochs": 1, "lora": {"r": 2}}},
    "tuning": {"trials": 1, "space": {"grad_ascent": {"lr": [1e-3]}, "npo+lora": {"lr": [1e-3]}}},
    "scoring": {"max_examples": 8},
}


def readme_table(results):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "readme_authors_table.py"
    spec = importlib.util.spec_from_file_location("readme_authors_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table(results)


def tiny(**changes):
    cfg = copy.deepcopy(TINY_AUTHORS)
    cfg.update(copy.deepcopy(changes))
    return cfg


def test_tiny_language_bench_runs_end_to_end(tmp_path):
    outcome = run_bench(parse_bench(tiny()), out=tmp_path, engine=LocalEngine(workers=1))
    assert not outcome.failures and not outcome.permanent
    kinds = sorted(j.kind for j in outcome.grid.jobs.values())
    # original; oracle and tuning oracle; 2 tunings; 2 methods + the second oracle of the noise floor
    assert kinds == ["oracle", "oracle", "original", "tune", "tune", "unlearn", "unlearn", "unlearn"]
    assert (tmp_path / "cache" / "original").is_dir()
    assert all(p.is_dir() for p in (tmp_path / "cache" / "oracle").iterdir())     # saved in transformers' format
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"original", "oracle", FLOOR, "grad_ascent", "npo+lora"}
    for name in ("original", FLOOR, "grad_ascent", "npo+lora"):         # scored against the oracle
        for metric in ("forget_quality", "model_utility", "privleak", "avg_gap", "seconds"):
            assert rows[name]["mean"][metric] is not None, (name, metric)
    assert rows["oracle"]["mean"]["model_utility"] is not None
    assert rows["npo+lora"]["args"]["lora"] == {"r": 2} and rows["npo+lora"]["tuned"]["best_args"]["lr"] == 1e-3
    variant = next(j for j in outcome.grid.jobs.values()
                   if j.labels.get("method") == "npo+lora" and j.kind == "unlearn")
    assert variant.spec["method"] == "npo"                               # the variant runs the registered method
    report = (tmp_path / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Method"))
    for column in ("FQ", "MU", "PrivLeak", "Avg.Gap", "seconds"):
        assert column in header
    for row in (ORIGINAL, ORACLE, FLOOR, "grad_ascent", "npo+lora"):
        assert f"| {row}" in report
    assert "not measured" not in report                                  # the floor is the second oracle
    lines = readme_table(results)                                        # the README's table of the benchmark
    assert lines[0].startswith("| forget | method | forget quality | model utility | PrivLeak %")
    body = {line.split(" | ")[1]: line for line in lines[2:]}
    assert list(body)[:3] == ["original", "oracle", FLOOR] and set(body) == set(rows)
    assert body[FLOOR].endswith("| noise floor |") and "1.0x" in body[FLOOR]
    again = run_bench(parse_bench(tiny()), out=tmp_path, engine=LocalEngine(workers=1), report=False)
    # resumed: every job reused
    assert again.ran == 0 and again.reused == len(outcome.grid.jobs)


def test_tuning_forget_sets_avoid_every_evaluated_author():
    from expunge.bench.jobs import load_data
    from expunge.experiment import make_split

    cfg = tiny(seeds=3, scenarios=[{"group_fraction": 0.1}, {"group_fraction": 0.2}])
    grid = expand(parse_bench(cfg))
    train, _ = load_data(grid.jobs[grid.cells[0].original].spec["data"], 0)
    groups = np.asarray(train.groups)

    def authors(forget_spec):
        forget, _ = make_split(train, forget_spec, 0)
        return set(groups[forget.indices].tolist())

    evaluated = set().union(*(authors(grid.jobs[c.oracle].spec["forget"]) for c in grid.cells))
    tuning = [j.spec["forget"] for j in grid.by_stage("oracle") if j.labels["scenario"].startswith("tuning")]
    assert len(tuning) == 2 and evaluated
    for spec in tuning:
        chosen = authors(spec)
        assert chosen and chosen.isdisjoint(evaluated), (chosen, evaluated)
    assert all(c.floor for c in grid.cells)                              # a second oracle in every cell


def test_classification_benches_keep_their_jobs():
    from tests.bench.tiny import tiny as tiny_classification

    grid = expand(parse_bench(tiny_classification()))
    assert not any(c.floor for c in grid.cells)
    assert not any("unlearn_seed" in j.spec or "scoring" in j.spec for j in grid.jobs.values())
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny_classification(scoring={"max_examples": 5}))
    assert e.value.path == "scoring"
    measured = expand(parse_bench(tiny_classification(noise_floor=True)))    # asked for: a second oracle per cell
    assert all(c.floor for c in measured.cells)


@pytest.mark.parametrize("changes, path", [
    ({"methods": {"npo+": {}}}, "methods.npo+"),
    ({"methods": {"nope+lora": {}}}, "methods.nope+lora"),
    ({"methods": {"npo+lora": {"lora": {"rank": 2}}}}, "methods.npo+lora.lora"),
    ({"methods": ["finetune"]}, "methods.finetune"),
    ({"model": {"name": "mlp"}}, "model.name"),
    ({"scenarios": [{"group_fraction": 1.0}]}, "scenarios[0].group_fraction"),
    ({"scoring": {"max_examples": 0}}, "scoring.max_examples"),
    ({"scoring": {"rows": 3}}, "scoring.rows"),
    ({"noise_floor": "yes"}, "noise_floor"),
    ({"tuning": {"space": {"npo+other": {"lr": [1e-3]}}}}, "tuning.space.npo+other"),
])
def test_language_bench_errors_name_the_key_path(changes, path):
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny(**changes))
    assert e.value.path == path, str(e.value)


def test_tuning_on_the_language_task_minimises_the_language_avg_gap():
    import expunge
    from expunge.tuning import tune

    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    res = tune("grad_ascent", task.original, forget=task.forget, retain=task.retain, test=task.holdout,
               oracle=task.oracle, trials=2, seed=0, space={"lr": [1e-3, 3e-2]}, fixed={"epochs": 1})
    assert len(res.trials) == 2 and all(t["error"] is None for t in res.trials)
    best = min(res.trials, key=lambda t: t["value"])
    assert res.best_value == best["value"] == best["scores"]["avg_gap"]
    assert res.best_args == best["args"]
    again = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="grad_ascent", seed=0,
                            **res.best_args)
    scores = expunge.evaluate(again, forget=task.forget, retain=task.retain, test=task.holdout,
                              reference=task.oracle)
    assert scores["avg_gap"] == pytest.approx(res.best_value)         # the objective is evaluate's Avg. Gap
    with pytest.raises(ValueError, match="not allowed for language"):
        tune("grad_ascent", task.original, forget=task.forget, retain=task.retain, test=task.holdout,
             oracle=task.oracle, trials=1, objective="w1_to_reference")


def test_quick_tuning_on_text_data_takes_as_many_other_authors():
    from expunge.tuning import tuning_set

    from tests.lm_helpers import tiny_qa_task

    task = tiny_qa_task()
    groups = np.asarray(task.data.groups)
    tset = tuning_set(task.data, task.forget, seed=0)
    gone = set(groups[task.forget.indices].tolist())
    chosen = set(groups[tset.forget.indices].tolist())
    assert len(chosen) == len(gone) and chosen.isdisjoint(gone)
    assert len(tset.forget) == sum(int((groups == g).sum()) for g in chosen)     # whole authors


def test_the_authors_benchmark_runs_every_language_method():
    from pathlib import Path

    from expunge.bench.choices import base_method
    from expunge.config import read_yaml
    from expunge.methods import registered

    raw = read_yaml(Path(__file__).parents[2] / "benchmarks" / "authors.yaml")
    language = {n for n, cls in registered().items() if "language" in cls.tasks} - {"retrain"}
    # uoe unlearns mixture-of-experts models only; the header says why it is left out
    assert {base_method(m) for m in raw["methods"]} == language - {"uoe"}
    assert {"npo+lora", "grad_diff+lora"} <= set(raw["methods"])
    assert all(raw["methods"][m]["lora"] for m in ("npo+lora", "grad_diff+lora"))
    assert sorted(s["group_fraction"] for s in raw["scenarios"]) == [0.01, 0.05, 0.10]
    assert raw["seeds"] == 3 and raw["tuning"]["methods"] == "all" and "space" not in raw["tuning"]
