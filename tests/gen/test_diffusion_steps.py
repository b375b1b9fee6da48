"""The diffusion maths shared by the sampler and the methods: x̂_0 from a noise prediction and the DDIM step."""
from __future__ import annotations

import pytest
import torch

import expunge

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def model():
    return expunge.gen.unet(widths=(8, 16), T=50)


def noised(model, t):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((4, *model.image_shape), generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    return x0, eps, model.add_noise(x0, eps, t)


@pytest.mark.parametrize("t", [7, torch.tensor([3, 10, 15, 20])])
def test_predict_x0_inverts_add_noise_given_the_true_noise(model, t):
    x0, eps, x_t = noised(model, t)
    assert torch.allclose(model.predict_x0(x_t, t, eps, clip=False), x0, atol=1e-5)
    far = model.predict_x0(x_t, t, eps + 3.0, clip=False)       # a wrong prediction lands outside [-1, 1] ...
    assert float(far.abs().max()) > 1.0
    clipped = model.predict_x0(x_t, t, eps + 3.0)               # ... unless clipped, as the sampler does
    assert float(clipped.abs().max()) <= 1.0


def test_a_ddim_step_with_the_true_noise_moves_along_the_same_trajectory(model):
    x0, eps, x_t = noised(model, 20)
    assert torch.allclose(model.ddim_step(x_t, 20, 8, eps), model.add_noise(x0, eps, 8), atol=1e-5)
    assert torch.allclose(model.ddim_step(x_t, 20, None, eps), x0, atol=1e-5)     # None: to the clean image
