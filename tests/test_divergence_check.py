"""A broken model never comes back without an error: ``Method.unlearn`` checks every result (parameters, buffers,
and outputs on a few forget and retain examples) and raises DivergenceError naming the method and what was
non-finite. Callers (experiments, tuning, bench jobs) report such a run and never keep its model."""
from __future__ import annotations

import pytest
import torch

import expunge
from expunge.data import digits
from expunge.experiment import Prepared, compare_methods
from expunge.methods.base import check_result
from expunge.training import DivergenceError
from expunge.tuning import tune


@pytest.fixture(scope="module")
def digits_mlp():
    train, test = digits(seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(expunge.model("mlp", train, seed=0), train, epochs=5, lr=0.05, seed=0)
    return dict(train=train, test=test, forget=forget, retain=retain, original=original)


def unlearn(t, method, **args):
    return expunge.unlearn(t["original"], forget=t["forget"], retain=t["retain"], method=method, seed=0, **args)


def test_fisher_with_a_huge_alpha_overflowing_the_outputs(digits_mlp):
    """alpha=1e30 leaves every weight finite (about 1e15) but the outputs overflow to inf."""
    with pytest.raises(DivergenceError, match=r"method 'fisher' returned a model whose outputs on the first 4 "
                                              r"forget example\(s\) are non-finite"):
        unlearn(digits_mlp, "fisher", alpha=1e30)


def test_fisher_with_a_huge_alpha_overflowing_the_weights(digits_mlp):
    with pytest.raises(DivergenceError, match=r"method 'fisher' returned a model whose parameter features\.1\.weight "
                                              r"has \d+ non-finite value"):
        unlearn(digits_mlp, "fisher", alpha=1e35)


def test_fisher_at_a_sane_alpha_passes(digits_mlp):
    out = unlearn(digits_mlp, "fisher", alpha=1e-6)
    assert all(bool(torch.isfinite(p).all()) for p in out.parameters())


def test_gradient_ascent_just_below_a_non_finite_loss(digits_mlp):
    """At lr=2 the loss itself turns non-finite during the run (caught by the training loop); at lr=1 every loss
    stays finite, and the model returned would give inf on the forget set: the check on the result catches it."""
    args = dict(epochs=2, batch_size=64)
    with pytest.raises(DivergenceError, match="loss became"):
        unlearn(digits_mlp, "gradient_ascent", lr=2.0, **args)
    with pytest.raises(DivergenceError, match=r"method 'gradient_ascent' returned a model whose outputs .* non-finite"):
        unlearn(digits_mlp, "gradient_ascent", lr=1.0, **args)
    unlearn(digits_mlp, "gradient_ascent", lr=0.3, **args)   # below that, a finite model comes back


def test_a_non_finite_buffer_is_named(digits_mlp):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.BatchNorm1d(10))
    model[2].running_var[3] = float("inf")
    with pytest.raises(DivergenceError, match=r"method 'm' returned a model whose buffer 2\.running_var has 1 "):
        check_result(model, digits_mlp["forget"], digits_mlp["retain"], "m")
    model[2].running_var[3] = 1.0
    check_result(model.eval(), digits_mlp["forget"], digits_mlp["retain"], "m")


def test_an_experiment_reports_the_diverged_method_and_keeps_no_model(digits_mlp):
    t = digits_mlp
    template = expunge.model("mlp", t["train"], seed=0)
    comp = compare_methods(Prepared(t["train"], t["test"], t["forget"], t["retain"], template),
                           {"fisher": {"alpha": 1e30}, "finetune": {"epochs": 1}}, recipe={"epochs": 5, "lr": 0.05},
                           original=t["original"])
    bad, good = comp.results
    assert bad.error.startswith("diverged: method 'fisher'") and bad.model is None and not bad.scores
    assert good.error is None and good.model is not None


def test_tuning_records_a_diverging_trial_as_failed(digits_mlp):
    t = digits_mlp
    oracle = unlearn(t, "retrain")
    r = tune("fisher", t["original"], forget=t["forget"], retain=t["retain"], test=t["test"], oracle=oracle,
             trials=4, space={"alpha": [1e-6, 1e30]})
    failed = [x for x in r.trials if x["error"]]
    assert [x["args"]["alpha"] for x in failed] == [1e30] and "non-finite" in failed[0]["error"]
    assert failed[0]["value"] is None and r.best_args["alpha"] == 1e-6


def test_the_cli_stops_a_diverging_run_exits_1_and_saves_nothing(tmp_path, store, capsys):
    from expunge.cli import main
    from expunge.store import RunStore

    code = main(["run", "examples/digits_finetune.yaml", "train.epochs=3", "method=fisher", "args={alpha: 1.0e+30}",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "method 'fisher' returned a model whose outputs" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("o/*.safetensors"))
    with RunStore(store) as db:
        assert [r.status for r in db.runs()] == ["FAILED"]


def test_a_bench_records_the_diverging_job_as_failed_and_scores_nothing(tmp_path):
    from expunge.bench import LocalEngine, parse_bench, run_bench

    from tests.bench.tiny import tiny

    bench = parse_bench(tiny(seeds=1, scenarios=[{"name": "random 10%", "fraction": 0.1}],
                             methods={"fisher": {"alpha": 1e35}, "finetune": {"epochs": 1, "lr": 0.05}}))
    outcome = run_bench(bench, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert not outcome.failures                      # not transient: it would diverge on every run
    assert len(outcome.permanent) == 1
    job, error = outcome.permanent[0]
    assert "fisher" in job and error.startswith("diverged: method 'fisher' returned a model whose parameter")
