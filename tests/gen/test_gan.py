"""The conditional GAN (expunge.gen.gan) and Adapt-then-Unlearn on it, on scikit-learn digits 0-3 at 8x8 with a
tiny GAN (width 32, ~35k parameters) trained once per module through ``expunge.train`` (~600 steps, a few seconds),
judged by a logistic regression trained on the real images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import expunge
from expunge.data import ArrayDataset, digits, for_generation, split_forget
from expunge.gen.gan import ConditionalGAN, gan
from expunge.methods.adapt_unlearn import AdaptUnlearn, generator_fisher, parameter_distance, repulsion_term

N_CLASSES = 4
FORGET = 1
TINY = dict(width=32, z_dim=16)
RECIPE = dict(epochs=20, batch_size=32, lr=5e-4)
QUICK = dict(adapt_epochs=5, epochs=10, lr=5e-4, batch_size=32)    # adapt_unlearn on the tiny GAN (~3 s)


@pytest.fixture(scope="module")
def task():
    train, _ = digits(seed=0)
    images = for_generation(train)
    keep = images.y < N_CLASSES
    data = ArrayDataset(images.x[keep], images.y[keep], task="generation", name="digits-0-3",
                        class_names=[str(c) for c in range(N_CLASSES)])
    forget, retain = split_forget(data, classes=[FORGET])
    from sklearn.linear_model import LogisticRegression

    judge = LogisticRegression(max_iter=3000).fit(data.x.reshape(len(data.x), -1).numpy(), data.y.numpy())
    original = expunge.train(gan(N_CLASSES, seed=0, **TINY), data, seed=0, **RECIPE)
    return data, forget, retain, judge, original


def hit_rates(model, judge, n: int = 50, seed: int = 1) -> np.ndarray:
    """Per class, the share of ``n`` samples conditioned on it that the judge assigns to it."""
    labels = torch.arange(N_CLASSES).repeat_interleave(n)
    pred = judge.predict(model.sample(labels, seed=seed).reshape(len(labels), -1).numpy())
    return np.array([float((pred[labels.numpy() == k] == k).mean()) for k in range(N_CLASSES)])


def test_trains_through_the_front_door_and_generates_each_class(task):
    data, _, _, judge, original = task
    assert isinstance(original, ConditionalGAN) and original.kind == "gan"
    x, y = data.x[:32], data.y[:32]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        assert torch.isfinite(original.training_loss(x, y))
    assert hit_rates(original, judge).min() >= 0.8


def test_sample_is_deterministic_shaped_and_in_range(task):
    original = task[-1]
    labels = torch.tensor([0, 1, 2, 3, 3])
    a, b, c = original.sample(labels, seed=7), original.sample(labels, seed=7), original.sample(labels, seed=8)
    assert a.shape == (5, 1, 8, 8) and not a.requires_grad
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    emb = original.embed(labels).detach().requires_grad_(True)
    out = original.sample(None, seed=7, embeddings=emb, grad=True)
    assert torch.allclose(out, a) and out.requires_grad
    with pytest.raises(ValueError, match="out of range"):
        original.sample(torch.tensor([N_CLASSES]))


def test_sixteen_pixel_images():
    model = gan(3, size=16, channels=3, seed=0, **TINY)
    assert model.image_shape == (3, 16, 16)
    assert model.sample(torch.tensor([0, 2]), seed=0).shape == (2, 3, 16, 16)
    assert model.discriminator(torch.zeros(2, 3, 16, 16), torch.tensor([0, 1])).shape == (2,)
    with pytest.raises(ValueError, match="size=12"):
        gan(size=12)


def test_fresh_copy_has_the_config_and_new_weights(task):
    original = task[-1]
    with torch.random.fork_rng():
        torch.manual_seed(3)
        fresh = original.fresh_copy()
    assert fresh.config() == original.config()
    assert not torch.equal(fresh.generator.project.weight, original.generator.project.weight)
    assert gan(N_CLASSES, seed=0, **TINY).config() == original.config()
    rebuilt = expunge.gen.from_config("gan", original.config())
    assert isinstance(rebuilt, ConditionalGAN) and rebuilt.config() == original.config()


def test_saved_and_loaded_gan_generates_the_same_images(tmp_path):
    model = gan(N_CLASSES, seed=0, **TINY)
    expunge.save_model(model, tmp_path / "gan.safetensors")
    loaded = expunge.load_model(tmp_path / "gan.safetensors")
    assert isinstance(loaded, ConditionalGAN) and loaded.config() == model.config()
    labels = torch.arange(N_CLASSES)
    assert torch.equal(loaded.sample(labels, seed=3), model.sample(labels, seed=3))


def test_generator_term_leaves_the_discriminator_untouched():
    model = gan(N_CLASSES, seed=0, **TINY)
    x, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.arange(8) % N_CLASSES
    torch.manual_seed(0)
    fakes = model.generator(torch.randn(8, model.z_dim), y)
    model.generator_loss(fakes, y).backward()        # the generator term alone (the D term zeroed)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    model.zero_grad(set_to_none=True)
    d_loss, _ = model.losses(x, y)
    d_loss.backward()                                # the discriminator term alone: no gradient into G
    assert all(p.grad is None for p in model.generator.parameters())
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    d_loss, g_loss = model.losses(x, y)
    (d_loss + g_loss).backward()                      # together: D's gradient is exactly the D term's
    d_grads = [p.grad.clone() for p in model.discriminator.parameters()]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    model.losses(x, y)[0].backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(d_grads, model.discriminator.parameters()))


def test_repulsion_forms_and_fisher(task):
    original = task[-1]
    d = torch.tensor(0.5)
    assert float(repulsion_term(d, "exp", 2.0)) == pytest.approx(100 * np.exp(-1.0))
    assert float(repulsion_term(d, "neg_l2", 2.0)) == pytest.approx(-1.0)
    assert float(repulsion_term(d, "inverse", 2.0)) == pytest.approx(4.0)
    theta = {n: p.detach().clone() for n, p in original.generator.named_parameters()}
    with torch.no_grad():
        assert float(parameter_distance(original, theta)) == 0.0
        moved = {n: t + 0.1 for n, t in theta.items()}
        assert float(parameter_distance(original, moved)) == pytest.approx(0.005)
    fisher = generator_fisher(original, 4, seed=0)
    assert set(fisher) == set(theta) and all(bool((f >= 0).all()) for f in fisher.values())
    assert sum(float(f.sum()) for f in fisher.values()) > 0


def test_adapt_unlearn_forgets_the_class_and_keeps_the_callers_model(task):
    data, forget, retain, judge, original = task
    before = {k: v.clone() for k, v in original.state_dict().items()}
    out = expunge.unlearn(original, forget=forget, retain=retain, method="adapt_unlearn", seed=0, **QUICK)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items())
    was, now = hit_rates(original, judge), hit_rates(out, judge)
    assert was[FORGET] >= 0.8 and now[FORGET] <= was[FORGET] - 0.5
    assert np.delete(now, FORGET).min() >= 0.8


def test_adapt_unlearn_is_deterministic(task):
    _, forget, retain, _, original = task
    short = dict(QUICK, adapt_epochs=1, epochs=1)
    a, b = (expunge.unlearn(original, forget=forget, retain=retain, method="adapt_unlearn", seed=0, **short)
            for _ in range(2))
    c = expunge.unlearn(original, forget=forget, retain=retain, method="adapt_unlearn", seed=1, **short)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_adapt_unlearn_refuses_bad_arguments_and_diffusion_models(task):
    data, forget, retain, _, original = task
    with pytest.raises(ValueError, match="unknown argument"):
        AdaptUnlearn(alpha=1.0)
    with pytest.raises(ValueError, match="repulsion"):
        AdaptUnlearn(repulsion="cosine")
    with pytest.raises(ValueError, match="gamma"):
        AdaptUnlearn(gamma=0.0)

    class FakeDiffusion(ConditionalGAN):
        kind = "diffusion"

    with pytest.raises(ValueError, match="unlearns gan models; this is a diffusion model"):
        AdaptUnlearn().unlearn(FakeDiffusion(N_CLASSES, **TINY), forget=forget, retain=retain)
