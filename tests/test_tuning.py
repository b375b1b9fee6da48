"""Tuning against the oracle with Optuna, on the small generated task of conftest.py."""
from __future__ import annotations

import optuna
import pytest

import expunge
from expunge import tuning
from expunge.tuning import TuningError, tune


def run(task, method="finetune", **kwargs):
    return tune(method, task.original, forget=task.forget, retain=task.retain, test=task.test, oracle=task.oracle,
                **kwargs)


def gap(task, method="finetune", **args):
    model = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=method, seed=0, **args)
    return expunge.evaluate(model, forget=task.forget, retain=task.retain, test=task.test,
                            reference=task.oracle)["avg_gap"]


@pytest.fixture(scope="module")
def finetune_result(task):
    return run(task, trials=5)


def test_beats_the_defaults(task, finetune_result):
    r = finetune_result
    default_gap = gap(task)
    assert r.trials[0]["args"] == {"lr": 0.01, "epochs": 10}       # the defaults run first
    assert r.trials[0]["value"] == pytest.approx(default_gap)
    assert r.best_value < default_gap                               # the defaults forget too little here
    assert r.best_value == min(t["value"] for t in r.trials if t["error"] is None)
    assert gap(task, **r.best_args) == pytest.approx(r.best_value)  # the reported arguments reproduce the value
    grid = expunge.methods()["finetune"].grid
    for t in r.trials:
        assert set(t["args"]) == set(grid) and all(t["args"][k] in grid[k] for k in grid)
        assert t["scores"]["avg_gap"] == t["value"]


def test_same_seed_same_study(task, finetune_result):
    again = run(task, trials=5)
    assert [(t["args"], t["value"]) for t in again.trials] == [(t["args"], t["value"]) for t in finetune_result.trials]
    assert again.best_args == finetune_result.best_args


def test_diverging_trial_is_recorded_and_skipped(task):
    r = run(task, "gradient_ascent", trials=10, space={"lr": [0.05, 1e6]}, fixed={"epochs": 5})
    failed = [t for t in r.trials if t["error"]]
    assert failed and all("DivergenceError" in t["error"] and t["value"] is None for t in failed)
    assert {t["args"]["lr"] for t in failed} == {1e6}
    assert r.best_args == {"epochs": 5, "lr": 0.05} and r.best_value == pytest.approx(gap(task, "gradient_ascent",
                                                                                          lr=0.05, epochs=5))
    assert len({t["args"]["lr"] for t in r.trials}) == len(r.trials) == 2   # stops once both values were run


def test_value_error_for_a_combination_is_recorded(task):
    r = run(task, trials=4, space={"prune_dense_then_recover": [None, 1.5]}, fixed={"epochs": 2, "lr": 0.05})
    bad = [t for t in r.trials if t["args"]["prune_dense_then_recover"] == 1.5]
    assert bad and "prune_dense_then_recover=1.5" in bad[0]["error"]
    assert r.best_args["prune_dense_then_recover"] is None


def test_every_trial_failing_raises(task):
    with pytest.raises(TuningError, match="all 1 trial.*DivergenceError"):
        run(task, "gradient_ascent", trials=3, space={"lr": [1e6]}, fixed={"epochs": 5})


def test_range_space(task):
    r = run(task, trials=3, space={"lr": {"low": 1e-3, "high": 0.1, "log": True}}, fixed={"epochs": 3})
    assert r.trials[0]["args"] == {"epochs": 3, "lr": 0.01}           # the default lr lies in the range
    assert all(1e-3 <= t["args"]["lr"] <= 0.1 for t in r.trials) and len(r.trials) == 3


def test_optuna_is_quiet_and_its_level_restored(task, capsys):
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        run(task, trials=1, fixed={"epochs": 1})
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert "Trial" not in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,match", [
    ({"space": {"learning_rate": [0.1]}}, r"unknown argument\(s\) \['learning_rate'\] in space; allowed: epochs, lr"),
    ({"fixed": {"nope": 1}}, r"unknown argument\(s\) \['nope'\] in fixed"),
    ({"space": {"lr": [0.1]}, "fixed": {"lr": 0.1}}, "both searched"),
    ({"space": {"lr": []}}, "non-empty list"),
    ({"space": {"lr": {"low": 0.1, "high": 0.01}}}, "not a valid range"),
    ({"objective": "forget_acc"}, "objective 'forget_acc' is not allowed for classification"),
    ({"trials": 0}, "trials=0"),
])
def test_bad_input_fails_before_any_trial(task, monkeypatch, kwargs, match):
    monkeypatch.setattr(tuning, "_evaluate", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(ValueError, match=match):
        run(task, **kwargs)


def test_objective_needing_test_data(task):
    with pytest.raises(ValueError, match="needs test data"):
        tune("finetune", task.original, forget=task.forget, retain=task.retain, test=None, oracle=task.oracle,
             objective="gap_test_acc")


def test_bad_types_and_methods(task, monkeypatch):
    monkeypatch.setattr(tuning, "_evaluate", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(TypeError, match="lr"):
        run(task, space={"lr": ["fast"]})
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run(task, "nope")
