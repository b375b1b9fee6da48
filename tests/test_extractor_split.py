"""Finding a model's feature extractor and head without being told: the input of its last nn.Linear."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import expunge
from expunge.data import ArrayDataset
from expunge.methods._embedding import Split, embed, extractor_parameters, final_linear_of, find_split
from expunge.models import MLP, ResNet18, SmallCNN

from tests.helpers import state_equal


class Ends(nn.Module):
    """A user model without ``features``/``head``: the output layer is registered first, under an arbitrary name,
    and a fixed preprocessing step runs in ``forward``."""

    def __init__(self, d_in: int = 20, k: int = 4):
        super().__init__()
        self.scores = nn.Linear(16, k)            # the last layer, registered before the others
        self.trunk = nn.Sequential(nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh())

    def forward(self, x):
        return self.scores(self.trunk(2 * x))


def plain_mlp(d_in: int = 20, k: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, k))


@pytest.mark.parametrize("model", [MLP(64, 10, hidden=(32, 16)), SmallCNN(1, 10, width=4), ResNet18(1, 10, width=4)],
                         ids=["mlp", "cnn", "resnet18"])
def test_builtin_models_split_where_their_features_end(model):
    x = torch.rand(5, 1, 8, 8)
    model.eval()
    found = find_split(model, x[:1], method="laf")
    assert (found.name, found.module, found.at) == ("head", model.head, "input")
    named = find_split(model, x[:1], method="laf", extractor="features")
    assert torch.equal(embed(model, found, x), embed(model, named, x))
    assert torch.equal(embed(model, found, x), model.features(x).flatten(1))
    assert extractor_parameters(model, found) == list(model.features.parameters())


def test_plain_sequential_and_a_user_module_split_at_their_last_linear():
    x = torch.randn(6, 20)
    seq = plain_mlp()
    split = find_split(seq, x[:1], method="laf")
    assert (split.name, split.module) == ("3", seq[3])
    assert torch.equal(embed(seq, split, x), seq[2](seq[1](x)))
    assert extractor_parameters(seq, split) == list(seq[1].parameters())

    user = Ends()
    split = find_split(user, x[:1], method="laf")
    assert (split.name, split.module) == ("scores", user.scores)
    assert torch.equal(embed(user, split, x), user.trunk(2 * x))
    assert extractor_parameters(user, split) == list(user.trunk.parameters())


def test_a_squeezed_regression_output_still_counts_as_the_last_linear():
    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.out = nn.Linear(5, 8), nn.Linear(8, 1)

        def forward(self, x):
            return self.out(torch.relu(self.body(x))).squeeze(-1)

    model = Squeezed()
    assert final_linear_of(model, torch.randn(1, 5), method="m") == ("out", model.out)


class Scaled(nn.Module):
    """The last nn.Linear is followed by a learned temperature: the output is not a Linear's."""

    def __init__(self):
        super().__init__()
        self.body, self.out = nn.Linear(20, 8), nn.Linear(8, 4)
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.out(torch.relu(self.body(x))) / self.temperature


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.out = nn.Linear(20, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.out(self.out(self.body(x)))


@pytest.mark.parametrize("model, message", [
    (Scaled(), r"^method 'laf' needs the model split into a feature extractor and a head, but the output of Scaled "
               r"is not the output of an nn.Linear layer; allowed: a model whose last layer is an nn.Linear .* or "
               r"extractor='<name>'"),
    (Twice(), r"runs 2 times per forward pass"),
    (nn.Sequential(nn.Linear(20, 4)), r"no trainable parameters before its last nn.Linear layer"),
])
def test_models_without_a_usable_last_linear_get_one_line(model, message):
    with pytest.raises(ValueError, match=message) as e:
        find_split(model, torch.randn(1, 20), method="laf")
    assert "\n" not in str(e.value)


def test_the_extractor_argument_overrides_the_found_split():
    model = Scaled()
    split = find_split(model, torch.randn(1, 20), method="laf", extractor="body")
    assert (split.module, split.at) == (model.body, "output")


@pytest.fixture(scope="module")
def user_task():
    """A 4-class task with a plain Sequential MLP and a user module trained on it."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(4, 20, generator=g)
    y = torch.arange(400) % 4
    data = ArrayDataset(centres[y] + torch.randn(400, 20, generator=g), y, task="classification")
    forget, retain = expunge.split_forget(data, classes=[1])
    models = {}
    for name, build in (("sequential", plain_mlp), ("user", Ends)):
        torch.manual_seed(0)
        models[name] = expunge.train(build(), data, seed=0, epochs=10)
    return data, forget, retain, models


def accuracy(model: nn.Module, data) -> float:
    x, y = data.dataset.x[data.indices], data.dataset.y[data.indices]
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("kind", ["sequential", "user"])
def test_laf_forgets_on_models_without_features_or_head(user_task, kind):
    data, forget, retain, models = user_task
    original = models[kind]
    assert accuracy(original, forget) > 0.95
    out = expunge.unlearn(original, forget=forget, retain=retain, method="laf", seed=0, epochs=20, lr=3e-3)
    head = dict(original.named_modules())[find_split(original, forget.dataset.x[:1], method="laf").name]
    assert state_equal(dict(out.named_modules())[find_split(out, forget.dataset.x[:1], method="laf").name], head)
    assert accuracy(out, forget) < 0.5
    assert accuracy(out, retain) > 0.8


@pytest.mark.parametrize("kind", ["sequential", "user"])
def test_boundary_expand_runs_on_models_without_features_or_head(user_task, kind):
    data, forget, retain, models = user_task
    original = models[kind]
    out = expunge.unlearn(original, forget=forget, retain=retain, method="boundary_expand", seed=0, lr=0.01)
    assert [n for n, _ in out.named_parameters()] == [n for n, _ in original.named_parameters()]
    assert accuracy(out, forget) < accuracy(original, forget)


def test_embed_reads_the_split_it_is_given():
    model = plain_mlp()
    x = torch.randn(3, 20)
    inside = Split("1", model[1], "output")
    assert torch.equal(embed(model, inside, x), model[1](x))
