"""The regression conformance table: every method registered for regression runs through the same checks.

The task is generated Friedman-1 (6000 rows, 4800 for training) with the lowest-target quartile as the forget set,
the target-range forgetting of Tarun et al. ("Deep Regression Unlearning", ICML 2023). The original is an MLP
trained with L1 loss and Adam; the oracle never sees the low targets, so on the forget set its predictions sit
well above the original's (W1 between the two ~1.9). ``regression_task()`` is cached so the method tests in
``tests/methods`` share it.

Each method registered for regression needs a row in ``CASES``: the arguments that make it do its job here.
``sisa`` unlearns a SISA ensemble, so its original is an ensemble trained on the same data and its oracle is that
ensemble trained from scratch without the forget set.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import expunge
from expunge.data import friedman
from expunge.data.datasets import targets
from expunge.methods import registered
from tests.helpers import state_equal

RECIPE = dict(epochs=30, lr=1e-3, optimizer="adam", weight_decay=0.0, loss="l1", batch_size=64)
ADAM = dict(optimizer="adam", weight_decay=0.0)

CASES: dict[str, dict] = {
    "retrain": {},
    "finetune": {"epochs": 5, "lr": 1e-3, **ADAM},
    "gradient_ascent": {"epochs": 1, "lr": 1e-5},
    "neggrad_plus": {"epochs": 2, "lr": 1e-3, "alpha": 0.9, **ADAM},
    "blindspot": {},
    "gaussian_finetune": {},
    "sisa": {},
    "influence": {"alpha": 1.0, "damping": 0.03},   # W1 to the oracle 1.87 -> 0.17 on all retain rows
    "identity": {},     # forgets nothing by design (forgets = False): the do-nothing baseline of audits
}
SPECIAL_ORIGINAL = {"sisa"}


@dataclass
class RegressionTask:
    train: object
    test: object
    forget: object
    retain: object
    original: torch.nn.Module
    oracle: torch.nn.Module


@functools.lru_cache(maxsize=None)
def regression_task() -> RegressionTask:
    """Friedman-1, forget = the lowest-target quartile of the training rows; original and oracle trained once."""
    torch.set_num_threads(1)
    train, test = friedman(n=6000, seed=0)
    y = targets(train).numpy()
    forget, retain = expunge.split_forget(train, where=y <= np.quantile(y, 0.25))
    original = expunge.train(expunge.model("mlp", train, hidden=[128, 64]), train, seed=0, **RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return RegressionTask(train, test, forget, retain, original, oracle)


SISA_SETTINGS = dict(shards=2, slices=2, seed=0, **dict(RECIPE, epochs=6))


@functools.lru_cache(maxsize=None)
def sisa_original() -> torch.nn.Module:
    from expunge.exact.sisa import SISA

    t = regression_task()
    return SISA(**SISA_SETTINGS).fit(expunge.model("mlp", t.train), t.train)


@functools.lru_cache(maxsize=None)
def sisa_oracle() -> torch.nn.Module:
    """The ensemble's own oracle: the same SISA ensemble trained from scratch without the forget set."""
    from expunge.exact.sisa import SISA

    t, ens = regression_task(), sisa_original()
    gone = set(ens.positions_of(t.forget))
    partition = [[[p for p in sl if p not in gone] for sl in shard] for shard in ens.partition]
    return SISA(**SISA_SETTINGS).fit(expunge.model("mlp", t.train), t.train, partition=partition)


def original_for(name: str) -> torch.nn.Module:
    return sisa_original() if name in SPECIAL_ORIGINAL else regression_task().original


def oracle_for(name: str) -> torch.nn.Module:
    return sisa_oracle() if name in SPECIAL_ORIGINAL else regression_task().oracle


@functools.lru_cache(maxsize=None)
def pristine(name: str) -> dict[str, torch.Tensor]:
    """The original's weights as they were before any method saw it (taken before the first unlearning)."""
    return {k: v.clone() for k, v in original_for(name).state_dict().items()}


@functools.lru_cache(maxsize=None)
def unlearned(name: str, seed: int = 0) -> torch.nn.Module:
    t = regression_task()
    pristine(name)
    return expunge.unlearn(original_for(name), forget=t.forget, retain=t.retain, method=name, seed=seed,
                           **CASES.get(name, {}))


def w1(model: torch.nn.Module, oracle: torch.nn.Module | None = None) -> float:
    t = regression_task()
    ref = t.oracle if oracle is None else oracle
    return expunge.evaluate(model, forget=t.forget, retain=t.retain, reference=ref)["w1_to_reference"]


@pytest.fixture(scope="module")
def task() -> RegressionTask:
    return regression_task()


def regression_methods() -> list[str]:
    return [n for n, cls in registered().items() if "regression" in cls.tasks]


def test_every_regression_method_has_a_row():
    missing = sorted(set(regression_methods()) - set(CASES))
    assert not missing, f"methods registered for regression without a conformance row: {missing}"


def test_the_task_separates_original_and_oracle(task):
    assert w1(task.original) > 1.0


@pytest.mark.parametrize("name", regression_methods())
def test_returns_new_model_and_leaves_caller_untouched(task, name):
    original, before, out = original_for(name), pristine(name), unlearned(name)
    assert out is not original and isinstance(out, torch.nn.Module)
    after = original.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the caller's model was modified"
    assert not any(p.data_ptr() == q.data_ptr() for p, q in zip(out.parameters(), original.parameters()))
    assert expunge.provenance(out).method == name
    assert expunge.provenance(out).seconds is not None


@pytest.mark.parametrize("name", regression_methods())
def test_same_seed_same_weights(task, name):
    again = expunge.unlearn(original_for(name), forget=task.forget, retain=task.retain, method=name, seed=0,
                            **CASES.get(name, {}))
    assert state_equal(unlearned(name), again)


@pytest.mark.parametrize("name", regression_methods())
def test_unknown_argument_rejected(task, name):
    with pytest.raises(ValueError, match="unknown argument"):
        expunge.unlearn(original_for(name), forget=task.forget, retain=task.retain, method=name,
                        not_an_argument=1)


@pytest.mark.parametrize("name", regression_methods())
def test_info_is_complete(name):
    info = expunge.methods()[name]
    assert info.paper and info.summary and info.reference
    for arg, values in info.grid.items():
        assert arg in info.defaults, f"grid names {arg!r}, which is not an argument"
        assert values, f"empty grid for {arg!r}"


@pytest.mark.parametrize("name", [n for n in regression_methods() if registered()[n].forgets])
def test_w1_to_oracle_decreases(task, name):
    """On the forget set, the unlearned model's predictions are closer (W1) to the oracle's than the original's."""
    oracle = oracle_for(name)
    before, after = w1(original_for(name), oracle), w1(unlearned(name), oracle)
    assert after < before, f"{name}: W1 to the oracle {after:.3f}, original {before:.3f}"
