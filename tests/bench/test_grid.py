"""Grid expansion and job keys: same inputs give the same key, any change changes it, and originals and oracles
are shared between the jobs that need them."""
from __future__ import annotations

import pytest

from expunge.bench import expand, job_key, parse_bench
from expunge.demo import classification_methods

from .tiny import tiny, write_config


def grid_of(**changes):
    return expand(parse_bench(tiny(**changes)))


def keys(grid, kind):
    return {j.key for j in grid.by_stage(kind)}


def test_counts_and_sharing():
    g = grid_of()
    assert len(g.by_stage("original")) == 2                 # one per seed
    assert len(g.by_stage("oracle")) == 4                   # per scenario and seed, shared by both methods
    assert len(g.by_stage("unlearn")) == 8                  # 2 scenarios x 2 methods x 2 seeds
    assert len(g.jobs) == 14 and len(g.cells) == 4
    for cell in g.cells:
        original = g.jobs[cell.original]
        assert original.spec["seed"] == cell.seed
        assert g.jobs[cell.oracle].deps == {"original": cell.original}
        for method, key in cell.unlearn.items():
            assert g.jobs[key].deps == {"original": cell.original, "oracle": cell.oracle}
            assert g.jobs[key].spec["method"] == method
    # stages come in dependency order
    order = [j.kind for j in g.jobs.values()]
    assert order == sorted(order, key=["original", "select", "oracle", "tune", "unlearn"].index)


def test_same_inputs_same_keys():
    assert list(grid_of().jobs) == list(grid_of().jobs)
    # labels and names are for people: renaming a scenario or the bench changes no key
    renamed = grid_of(name="other", scenarios=[{"name": "r", "fraction": 0.1}, {"name": "c", "classes": [0]}])
    assert set(renamed.jobs) == set(grid_of().jobs)


@pytest.mark.parametrize("changes, changed, kept", [
    ({"train": {"epochs": 4, "lr": 0.06, "batch_size": 32}}, {"original", "oracle", "unlearn"}, set()),
    ({"model": {"name": "mlp", "args": {"hidden": [17]}}}, {"original", "oracle", "unlearn"}, set()),
    ({"data": {"name": "classification", "args": {"n": 241}, "test_fraction": 0.25}},
     {"original", "oracle", "unlearn"}, set()),
    ({"scenarios": [{"name": "random 10%", "fraction": 0.11}, {"name": "class 0", "classes": [0]}]},
     {"oracle", "unlearn"}, {"original"}),
    ({"methods": {"finetune": {"epochs": 3, "lr": 0.05}, "gradient_ascent": {"epochs": 1, "lr": 0.01}}},
     {"unlearn"}, {"original", "oracle"}),
])
def test_any_change_changes_the_keys_that_depend_on_it(changes, changed, kept):
    a, b = grid_of(), grid_of(**changes)
    for kind in changed:
        assert keys(a, kind) != keys(b, kind), kind
    for kind in kept:
        assert keys(a, kind) == keys(b, kind), kind


def test_a_method_argument_changes_only_that_methods_jobs():
    a = grid_of()
    b = grid_of(methods={"finetune": {"epochs": 3, "lr": 0.05}, "gradient_ascent": {"epochs": 1, "lr": 0.01}})
    for ca, cb in zip(a.cells, b.cells):
        assert ca.unlearn["gradient_ascent"] == cb.unlearn["gradient_ascent"]
        assert ca.unlearn["finetune"] != cb.unlearn["finetune"]


def test_seeds_version_and_forget_seed_enter_the_key():
    a = grid_of(seeds=[0, 1])
    b = grid_of(seeds=[1, 2])
    assert len(set(a.jobs) & set(b.jobs)) == len(a.jobs) // 2        # seed 1's jobs are the same jobs
    spec, deps = {"seed": 0}, {"original": "abc"}
    assert job_key("oracle", spec, deps) == job_key("oracle", dict(spec), dict(deps))
    assert job_key("oracle", spec, deps, version="9.9") != job_key("oracle", spec, deps)
    assert job_key("oracle", spec, {"original": "abd"}) != job_key("oracle", spec, deps)
    fixed = grid_of(scenarios=[{"fraction": 0.1, "seed": 7}])
    assert len(fixed.by_stage("oracle")) == 2     # the split is the same, but each seed has its own original
    assert {j.spec["forget"]["seed"] for j in fixed.by_stage("oracle")} == {7}


def test_methods_all_with_overrides_and_exclusions():
    spec = parse_bench(tiny(methods="all", exclude=["ssd"], args={"finetune": {"epochs": 1}}))
    expected = [m for m in classification_methods() if m != "ssd"]
    assert list(spec.methods) == expected
    assert spec.methods["finetune"] == {"epochs": 1}


def test_worst_case_and_tuning_share_the_random_tuning_set():
    pytest.importorskip("expunge.worst_case")
    pytest.importorskip("expunge.tuning")
    spec = parse_bench(tiny(seeds=[0, 1], scenarios=[{"name": "random", "fraction": 0.1},
                                                     {"name": "worst", "worst_case": 0.1}],
                            tuning={"trials": 2, "methods": ["finetune"], "seed": 0}))
    g = expand(spec)
    tunes = g.by_stage("tune")
    assert len(tunes) == 1              # tuned once on a random 10% set, reused on the worst-case set
    assert tunes[0].spec["forget"] == {"fraction": 0.1, "seed": 1000}
    assert len(g.by_stage("select")) == 2                    # one worst-case selection per seed's original
    for cell in g.cells:
        assert g.jobs[cell.unlearn["finetune"]].deps["tune"] == tunes[0].key
        assert "tune" not in g.jobs[cell.unlearn["gradient_ascent"]].deps
    # the tuning oracle reuses seed 0's original
    assert g.jobs[tunes[0].deps["original"]].spec["seed"] == 0
    assert tunes[0].deps["original"] in {c.original for c in g.cells}


def test_shipped_configs_are_valid():
    from expunge.bench import load_bench

    small = expand(load_bench("examples/bench_small.yaml"))
    assert len(small.cells) == 6 and len(small.by_stage("select")) == 2
    digits = load_bench("benchmarks/digits.yaml")
    assert list(digits.methods) == classification_methods()
    mlp, cnn = digits.setups
    assert "ct" not in digits.methods_for(mlp) and "ct" in digits.methods_for(cnn)
    per_setup = len(digits.methods_for(mlp)) + len(digits.methods_for(cnn))
    assert digits.seeds == [0, 1, 2] and digits.summary == "benchmarks/results/digits.json"
    kinds = [next(iter(s.forget)) for s in digits.scenarios]
    assert kinds == ["fraction", "classes", "worst_case"]
    assert set(digits.tuning.methods) == set(digits.methods)
    g = expand(digits)
    assert len(g.by_stage("unlearn")) == 9 * per_setup
    assert len(g.by_stage("tune")) == 2 * per_setup     # random 10% (shared with worst-case), class 5


def test_methods_that_need_convolutions_are_skipped_on_models_without_them(tmp_path):
    from expunge.bench import load_bench

    cfg = tiny(methods=["ct", "finetune"])
    spec = load_bench(write_config(tmp_path / "b.yaml", cfg))
    (setup,) = spec.setups
    assert list(spec.methods_for(setup)) == ["finetune"]
    assert {g.spec["method"] for g in expand(spec).by_stage("unlearn")} == {"finetune"}
