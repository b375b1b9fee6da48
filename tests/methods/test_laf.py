from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import expunge
from expunge.methods._embedding import Split, embed, extractor_of
from expunge.methods.laf import alignment_loss, nmse, vae_loss
from expunge.models import MLP, ResNet18, SmallCNN

from tests.helpers import state_equal


def test_vae_loss_on_known_values():
    e = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    recon = torch.tensor([[1.0, 0.0], [3.0, 5.0]])          # squared errors per row: 4 and 1
    mu = torch.tensor([[0.0, 0.0], [1.0, 1.0]])             # KL per row with unit variance: ½Σμ² = 0 and 1
    logvar = torch.zeros(2, 2)
    assert vae_loss(recon, e, mu, logvar, kl_weight=0.025).item() == pytest.approx(2.5 + 0.025 * 0.5)
    # KL(N(0, 4) ‖ N(0, 1)) = ½(σ² − 1 − log σ²) = 1.5 − log 2, with no reconstruction error
    one = torch.zeros(1, 1)
    kl = vae_loss(one, one, one, torch.full((1, 1), math.log(4.0)), kl_weight=1.0)
    assert kl.item() == pytest.approx(1.5 - math.log(2.0))


def test_nmse_on_known_values():
    e = torch.zeros(3, 2)
    recon = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, math.sqrt(2.0)]])   # m = 0, 1, 3
    expected = math.exp(0.0) + math.exp(0.5) + math.exp(0.75)
    assert nmse(recon, e).item() == pytest.approx(expected, rel=1e-6)
    far = nmse(torch.full((1, 4), 1e4), torch.zeros(1, 4)).item()
    assert far == pytest.approx(math.e, rel=1e-6)              # bounded by e per example


def test_alignment_loss_on_known_values():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    forget_teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    orthogonal = torch.tensor([[0.0, 2.0], [3.0, 0.0], [1.0, -1.0]])      # d = 1 for every forget example
    tau = 5.0
    loss = alignment_loss(2 * t, t, orthogonal, forget_teacher, tau)      # d = 0 on retain (scale is ignored)
    assert loss.item() == pytest.approx(-2 * (math.log(3.0) + 1 / tau), rel=1e-6)
    # pushing forget embeddings away from the teacher lowers the loss; moving retain away raises it
    assert alignment_loss(t, t, -forget_teacher, forget_teacher, tau) < loss
    assert alignment_loss(t.flip(1), t, orthogonal, forget_teacher, tau) > loss


@pytest.mark.parametrize("model, x", [
    (MLP(64, 10, hidden=(32, 16)), torch.rand(5, 1, 8, 8)),
    (SmallCNN(1, 10, width=4), torch.rand(5, 1, 8, 8)),
    (ResNet18(1, 10, width=4), torch.rand(5, 1, 8, 8)),
])
def test_builtin_models_split_into_extractor_and_head(model, x):
    model.eval()
    extractor = extractor_of(model, "features", method="laf")
    assert extractor is model.features
    e = embed(model, Split("features", extractor, "output"), x)
    assert e.shape == (5, model.head.in_features)
    assert torch.allclose(model.head(e), model(x))


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        self.out = nn.Linear(32, 4)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.out(self.body(x))


def test_unsplittable_model_gets_a_clear_error(task):
    model = nn.Sequential(nn.Linear(20, 4))
    with pytest.raises(ValueError, match=r"no trainable parameters before its last nn.Linear layer \(0\)"):
        expunge.unlearn(model, forget=task.forget, retain=task.retain, method="laf", epochs=1)
    with pytest.raises(ValueError, match=r"no submodule 'features'.*extractor='<name>'.*submodules: 0"):
        expunge.unlearn(model, forget=task.forget, retain=task.retain, method="laf", epochs=1, extractor="features")
    with pytest.raises(ValueError, match="must run once per forward pass"):
        expunge.unlearn(UserNet(), forget=task.forget, retain=task.retain, method="laf", epochs=1,
                        extractor="unused")


def test_named_split_changes_only_the_extractor(task):
    model = UserNet()
    out = expunge.unlearn(model, forget=task.forget, retain=task.retain, method="laf", epochs=2, lr=1e-2,
                          extractor="body")
    assert state_equal(out.out, model.out)
    assert not state_equal(out.body, model.body)


def test_rejects_bad_arguments(task):
    for bad in ({"temperature": 0.0}, {"latent_dim": 0}, {"extract_weight": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="laf", **bad)


def test_digits_classwise_forgetting_matches_retraining(digits_classwise_task):
    """Forgetting the digit 0 with the defaults: forget accuracy falls to the oracle's while the remaining classes'
    test accuracy stays within a few points of it; the head is left as it was."""
    t = digits_classwise_task
    original, oracle = t.original, t.oracle
    out = expunge.unlearn(original, forget=t.forget, retain=t.retain, method="laf", seed=0)
    keep = t.test.y != 0

    def acc(model, x, y):
        with torch.no_grad():
            return 100 * (model(x).argmax(1) == y).float().mean().item()

    fx, fy = t.train.x[t.forget.indices], t.train.y[t.forget.indices]
    assert acc(original, fx, fy) > 95
    assert acc(out, fx, fy) <= acc(oracle, fx, fy) + 5
    assert acc(out, t.test.x[keep], t.test.y[keep]) >= acc(oracle, t.test.x[keep], t.test.y[keep]) - 3
    assert state_equal(out.head, original.head)
