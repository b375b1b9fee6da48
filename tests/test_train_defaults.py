"""``expunge.train`` with its default recipe: regression targets in the tens train, classification is unchanged,
a forced huge learning rate still stops with DivergenceError."""
from __future__ import annotations

import pytest
import torch

import expunge
from expunge import ensemble
from expunge.data import ArrayDataset
from expunge.provenance import provenance
from expunge.training import DivergenceError, Recipe


def regression_data(seed: int, n: int = 1000, mean: float = 50.0, sd: float = 20.0) -> ArrayDataset:
    """Targets ~N(mean, sd²): a smooth function of 10 Gaussian features, rescaled."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    w = torch.randn(10, generator=g)
    y = x @ w / w.norm() + 0.5 * torch.sin(3 * x[:, 0])
    return ArrayDataset(x, mean + sd * (y - y.mean()) / y.std(), task="regression")


def mse(model: torch.nn.Module, data: ArrayDataset) -> float:
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(data.x).squeeze(-1), data.y).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_with_targets_in_the_tens_trains_with_the_defaults(seed):
    data = regression_data(seed, n=1500)
    train, test = (ArrayDataset(data.x[rows], data.y[rows], task="regression")
                   for rows in (slice(1000), slice(1000, None)))
    out = expunge.train(expunge.model("mlp", train, seed=seed), train, seed=seed)
    mean_loss = ((test.y - train.y.mean()) ** 2).mean().item()     # predicting the training mean
    assert mse(out, test) < 0.1 * mean_loss
    assert provenance(out).recipe["clip_grad_norm"] == 5.0          # the recipe used is recorded


def test_unclipped_sgd_fails_on_the_same_data():
    """What the regression default guards against: the classification recipe (no clipping) diverges or learns
    nothing on these targets."""
    for seed in (0, 1):
        train = regression_data(seed)
        try:
            out = expunge.train(expunge.model("mlp", train, seed=seed), train, seed=seed, clip_grad_norm=None)
        except DivergenceError as e:
            assert "epoch 1," in str(e)
        else:
            assert mse(out, train) > 0.9 * train.y.var().item()     # no better than predicting the mean


def test_settings_given_are_kept_and_classification_defaults_are_the_field_defaults():
    assert Recipe.for_task("classification", {}) == Recipe()
    assert Recipe.for_task("regression", {}) == Recipe(clip_grad_norm=5.0)
    assert Recipe.for_task("regression", {"clip_grad_norm": None, "lr": 0.01}) == Recipe(lr=0.01)
    assert Recipe.for_task("regression", {"clip_grad_norm": 1.0}).clip_grad_norm == 1.0
    with pytest.raises(ValueError, match="task='ranking' is not allowed"):
        Recipe.for_task("ranking", {})


def test_the_oracle_and_ensembles_use_the_recorded_regression_defaults():
    train = regression_data(0, n=200)
    original = expunge.train(expunge.model("mlp", train, seed=0), train, seed=0, epochs=2)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    assert provenance(oracle).recipe == provenance(original).recipe
    ens = ensemble.train(expunge.model("mlp", train, seed=0), train, seeds=[0], epochs=2)
    assert ens.records[0].recipe == provenance(original).recipe


def test_classification_with_the_defaults_reaches_good_accuracy(digits_classwise_task):
    t = digits_classwise_task                 # its original is expunge.train(model, digits) with the defaults
    assert provenance(t.original).recipe == Recipe().to_dict()
    with torch.no_grad():
        accuracy = (t.original(t.test.x).argmax(1) == t.test.y).float().mean().item()
    assert accuracy > 0.9


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_forced_huge_learning_rate_still_diverges(task):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (torch.randint(0, 3, (256,), generator=g) if task == "classification"
         else 50 + 20 * torch.randn(256, generator=g))
    data = ArrayDataset(x, y, task=task)
    with pytest.raises(DivergenceError, match="train: "):
        expunge.train(expunge.model("mlp", data, seed=0), data, seed=0, lr=1e6, epochs=3)
