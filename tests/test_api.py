"""The public contract with a user-defined nn.Module and a dataset expunge has never seen."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import expunge
from tests.helpers import state_equal


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 32), nn.Tanh())
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        return self.out(self.body(x))


class UserData(Dataset):
    """A plain torch Dataset of (x, y) pairs: three Gaussian blobs, some label noise."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randn(n, 6, generator=g) + 1.5 * nn.functional.one_hot(self.y, 6).float()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def contract():
    train, test = UserData(300, 0), UserData(150, 1)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    original = expunge.train(UserNet(), train, epochs=20, lr=0.05, seed=0)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return train, test, forget, retain, original, oracle


def test_contract_end_to_end(contract, tmp_path):
    train, test, forget, retain, original, oracle = contract
    model = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", seed=0, epochs=5, lr=0.01)
    scores = expunge.evaluate(model, forget=forget, retain=retain, test=test, reference=oracle)
    for key in ("forget_acc", "retain_acc", "test_acc", "ua", "mia_efficacy", "gap_ua", "gap_retain_acc",
                "gap_test_acc", "gap_mia_efficacy", "avg_gap", "seconds", "rte", "evidence_tier"):
        assert isinstance(scores[key], float), key
    assert scores["ua"] == pytest.approx(100 - scores["forget_acc"])
    gaps = [scores[f"gap_{k}"] for k in ("ua", "retain_acc", "test_acc", "mia_efficacy")]
    assert scores["avg_gap"] == pytest.approx(sum(gaps) / 4)
    assert scores["test_acc"] > 60
    path = tmp_path / "m.safetensors"
    expunge.save_model(model, path)
    again = expunge.load_model(path, into=UserNet())
    assert state_equal(again, model)
    assert expunge.provenance(again).method == "finetune"


def test_retrain_is_a_fresh_model_trained_on_retain_with_the_originals_recipe(contract):
    train, test, forget, retain, original, oracle = contract
    assert expunge.provenance(oracle).recipe == expunge.provenance(original).recipe
    again = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    assert state_equal(oracle, again)
    # trained on retain only: identical to training a fresh model (initialised from the oracle's own seed stream)
    # on retain with the same seed
    from expunge.methods._common import fresh_initialisation
    from expunge.seeds import ORACLE_INIT, derive
    direct = expunge.train(fresh_initialisation(original, derive(0, ORACLE_INIT)), retain, seed=0,
                           **expunge.provenance(original).recipe)
    assert state_equal(oracle, direct)


def test_retrain_needs_a_recipe_for_foreign_models(contract):
    _, _, forget, retain, _, _ = contract
    with pytest.raises(ValueError, match="no training recipe"):
        expunge.unlearn(UserNet(), forget=forget, retain=retain, method="retrain")
    out = expunge.unlearn(UserNet(), forget=forget, retain=retain, method="retrain", epochs=1, lr=0.01)
    assert expunge.provenance(out).method == "retrain"


def test_retrain_refuses_parameters_it_cannot_reset(contract):
    _, _, forget, retain, original, _ = contract

    class WithRawParam(UserNet):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return super().forward(x) * self.scale

    m = expunge.train(WithRawParam(), forget, epochs=1, seed=0)
    with pytest.raises(ValueError, match="init="):
        expunge.unlearn(m, forget=forget, retain=retain, method="retrain")
    out = expunge.unlearn(m, forget=forget, retain=retain, method="retrain", init=WithRawParam)
    assert isinstance(out, WithRawParam)


def test_methods_listing():
    infos = expunge.methods()
    for name in ("retrain", "finetune", "gradient_ascent", "random_label", "neggrad_plus"):
        assert name in infos and infos[name].paper
    assert infos["finetune"].defaults["epochs"] == 10
    assert infos["gradient_ascent"].needs["retain"] is False


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(method="no_such_method"), ValueError, "unknown method 'no_such_method'; allowed:"),
    (dict(method="finetune", lr="fast"), TypeError, "lr='fast' must be a number"),
    (dict(method="finetune", epochs=2.5), TypeError, "must be an integer"),
    (dict(method="finetune", bogus=1), ValueError, r"unknown argument\(s\) \['bogus'\]"),
    (dict(method="finetune", optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(method="neggrad_plus", alpha=2.0), ValueError, "alpha"),
    (dict(method="finetune", prune_dense_then_recover=1.5), ValueError, "prune_dense_then_recover"),
])
def test_bad_method_requests(contract, kwargs, error, message):
    _, _, forget, retain, original, _ = contract
    with pytest.raises(error, match=message):
        expunge.unlearn(original, forget=forget, retain=retain, seed=0, **kwargs)


def test_bad_data_requests(contract):
    train, _, forget, retain, original, _ = contract
    with pytest.raises(ValueError, match="overlap"):
        expunge.unlearn(original, forget=forget, retain=train, method="finetune")
    with pytest.raises(ValueError, match="needs retain data"):
        expunge.unlearn(original, forget=forget, method="finetune")
    wide = expunge.as_dataset(torch.randn(10, 6), torch.arange(10) % 5)
    f, r = expunge.split_forget(wide, fraction=0.2)
    with pytest.raises(ValueError, match="label 4 but the model has only 3 outputs"):
        expunge.unlearn(original, forget=f, retain=r, method="finetune")
    with pytest.raises(ValueError, match="label 4 but the model has only 3 outputs"):
        expunge.train(UserNet(), wide)
    with pytest.raises(TypeError, match="nn.Module"):
        expunge.unlearn("not a model", forget=forget, retain=retain)


def test_prune_dense_then_recover_keeps_weights_at_zero(contract):
    _, _, forget, retain, original, _ = contract
    out = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", prune_dense_then_recover=0.5,
                          epochs=3)
    from expunge.methods.base import prunable
    w = torch.cat([p.detach().flatten() for p in prunable(out).values()])
    assert float((w == 0).float().mean()) >= 0.5


def test_a_bad_model_argument_is_named_even_after_a_good_one():
    train, _ = expunge.data.digits()
    with pytest.raises(ValueError, match=r"dropout=1.5 is not allowed"):
        expunge.model("mlp", train, hidden=[64], dropout=1.5)
