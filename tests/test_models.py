"""Built-in architectures: shapes, the features/head split, building by name."""
from __future__ import annotations

import pytest
import torch

import expunge
from expunge.models import MLP, ResNet18, SmallCNN, build_model


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 32, 32)),
                                         ("resnet18", (3, 32, 32))])
def test_build_by_name_and_forward(name, shape):
    m = build_model(name, sample_shape=shape, num_outputs=7, **({"width": 8} if name == "resnet18" else {}))
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.equal(m.head(m.features(torch.zeros(1, *shape))), m(torch.zeros(1, *shape)))


def test_resnet18_has_the_paper_layout():
    m = ResNet18(3, 10)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_bad_model_requests():
    with pytest.raises(ValueError, match="unknown model 'vgg'; allowed: mlp, cnn, resnet18"):
        build_model("vgg", sample_shape=(3,), num_outputs=2)
    with pytest.raises(ValueError, match="C x H x W"):
        build_model("cnn", sample_shape=(64,), num_outputs=2)
    with pytest.raises(ValueError, match="bad arguments for model 'mlp'"):
        build_model("mlp", sample_shape=(4,), num_outputs=2, depth=3)


def test_cnn_learns_digits():
    train, test = expunge.data.digits()
    m = expunge.train(expunge.model("cnn", train, width=8), train, epochs=10, lr=0.05, seed=0)
    scores = expunge.evaluate(m, forget=train, retain=train, test=test)
    assert scores["test_acc"] > 80
    assert isinstance(m, SmallCNN) and not isinstance(m, MLP)
