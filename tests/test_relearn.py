"""Relearn time and the anamnesis index, and the early stop they rely on (``training.StopTraining``)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import expunge
from expunge.metrics.relearn import anamnesis_index, forget_loss, relearn_time
from expunge.training import Recipe, StopTraining, batches, fit
from tests.helpers import state_equal


# --- StopTraining --------------------------------------------------------------------------------------------

def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    return expunge.as_dataset(x, (x[:, 0] > 0).long())


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


RECIPE = Recipe(epochs=5, lr=0.1, batch_size=16, schedule="constant")


def test_a_step_hook_can_stop_the_run_after_its_step():
    steps = []

    def stop_after_three(model):
        steps.append(1)
        if len(steps) == 3:
            raise StopTraining("enough")

    stopped = fit(_net(), batches(_data(), 16), recipe=RECIPE, seed=0, step_hooks=[stop_after_three])
    assert len(steps) == 3 and not stopped.training

    full_plan = batches(_data(), 16)
    first_three = lambda epoch, g: full_plan(epoch, g)[:3]   # noqa: E731 - the same first three batches
    three = fit(_net(), first_three, recipe=Recipe(epochs=1, lr=0.1, batch_size=16, schedule="constant"), seed=0)
    assert state_equal(stopped, three)


def test_an_epoch_hook_can_stop_the_run():
    epochs = []

    def stop(model, epoch):
        epochs.append(epoch)
        raise StopTraining

    fit(_net(), batches(_data(), 16), recipe=RECIPE, seed=0, epoch_hooks=[stop])
    assert epochs == [0]


# --- relearn time and AIN on classification (the shared generated task) ------------------------------------

def mix(a: nn.Module, b: nn.Module, alpha: float) -> nn.Module:
    """Weights alpha * a + (1 - alpha) * b: a model part-way between the oracle and the original."""
    out = copy.deepcopy(a)
    sa, sb = a.state_dict(), b.state_dict()
    out.load_state_dict({k: alpha * sa[k] + (1 - alpha) * sb[k] for k in sa})
    return out


KW = dict(lr=1e-2, batch_size=16, max_epochs=30)


def test_forget_loss_is_cross_entropy_for_classification(task):
    with torch.no_grad():
        logits = task.original(task.forget.dataset.x[task.forget.indices])
    y = task.forget.dataset.y[task.forget.indices]
    expected = float(nn.functional.cross_entropy(logits, y))
    assert forget_loss(task.original, task.forget) == pytest.approx(expected, rel=1e-5)


def test_the_original_needs_no_relearning_and_the_oracle_some(task):
    target = 1.05 * forget_loss(task.original, task.forget)
    assert relearn_time(task.original, task.forget, target_loss=target, **KW).steps == 0
    oracle = relearn_time(task.oracle, task.forget, target_loss=target, **KW)
    assert oracle.reached and oracle.steps > 0 and oracle.final_loss <= target < oracle.start_loss


def test_relearn_time_leaves_the_model_alone_and_is_repeatable(task):
    before = copy.deepcopy(task.oracle.state_dict())
    target = 1.05 * forget_loss(task.original, task.forget)
    a = relearn_time(task.oracle, task.forget, target_loss=target, **KW)
    b = relearn_time(task.oracle, task.forget, target_loss=target, **KW)
    assert a == b
    assert all(torch.equal(before[k], v) for k, v in task.oracle.state_dict().items())


def test_ain_orders_models_by_how_much_they_still_remember(task):
    oracle = anamnesis_index(task.oracle, original=task.original, oracle=task.oracle, forget=task.forget, **KW)
    assert oracle.ain == 1.0
    # interpolating weights needs two models from one initialisation; the oracle has its own, so mix the original
    # with a model retrained on retain from the original's initial weights
    from expunge.methods._common import fresh_initialisation
    same_start = expunge.train(fresh_initialisation(task.original, 0), task.retain, seed=0,
                               **expunge.provenance(task.original).recipe)
    half = anamnesis_index(mix(task.original, same_start, 0.6), original=task.original, oracle=task.oracle,
                           forget=task.forget, **KW)
    assert 0 < half.ain < 1, half
    original = anamnesis_index(task.original, original=task.original, oracle=task.oracle, forget=task.forget, **KW)
    assert original.ain == 0.0


def test_a_target_never_reached_is_flagged(task):
    res = relearn_time(task.oracle, task.forget, target_loss=0.0, lr=1e-5, batch_size=64, max_epochs=1)
    assert not res.reached and res.steps == math.ceil(len(task.forget) / 64)


def test_bad_settings_are_rejected(task):
    with pytest.raises(ValueError, match="target_loss"):
        relearn_time(task.oracle, task.forget, target_loss=float("nan"))
    with pytest.raises(ValueError, match="max_epochs"):
        relearn_time(task.oracle, task.forget, target_loss=1.0, max_epochs=0)
    with pytest.raises(ValueError, match="tolerance"):
        anamnesis_index(task.oracle, original=task.original, oracle=task.oracle, forget=task.forget, tolerance=2)


# --- regression: the Friedman target-range task --------------------------------------------------------------

def test_ain_on_regression():
    from tests.conformance.test_regression_methods import regression_task, unlearned

    t = regression_task()
    out = anamnesis_index(unlearned("blindspot"), original=t.original, oracle=t.oracle, forget=t.forget,
                          lr=1e-3, batch_size=64)
    assert out.oracle.reached and out.oracle.steps > 0
    assert out.unlearned.start_loss > out.original_loss * 1.05      # blindspot did raise the forget error
    assert 0 < out.ain < math.inf
    mae = expunge.evaluate(t.original, forget=t.forget, retain=t.retain)["forget_mae"]
    assert out.original_loss == pytest.approx(mae, rel=1e-5)          # L1, the reference's loss
