"""Diffusion models on the front door: data for generation, DDPM training through ``expunge.train``, DDIM sampling,
the oracle, save/load, a user's own diffusers UNet and scheduler, and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import expunge
from expunge.data import for_generation, split_forget

pytest.importorskip("diffusers")

from expunge.gen.diffusion import DiffusionModel, linear_alphas_cumprod  # noqa: E402


@pytest.fixture(scope="module")
def images():
    train, _ = expunge.data.digits()
    return for_generation(train)


@pytest.fixture(scope="module")
def small(images):
    return Subset(images, list(range(48)))


def tiny():
    return expunge.gen.unet(widths=(8, 16), T=50)


def test_for_generation_scales_to_minus_one_one_and_keeps_labels(images):
    train, _ = expunge.data.digits()
    assert images.task == "generation" and images.num_classes == 10
    assert torch.allclose(images.x, train.x * 2 - 1) and torch.equal(images.y, train.y)
    assert float(images.x.min()) == -1.0 and float(images.x.max()) == 1.0
    big = for_generation(train, size=16)
    assert big.x.shape[1:] == (1, 16, 16) and float(big.x.abs().max()) <= 1.0
    forget, retain = split_forget(images, classes=[3])
    assert set(expunge.data.targets(forget).tolist()) == {3} and 3 not in set(expunge.data.targets(retain).tolist())


def test_for_generation_refuses_what_is_not_labelled_images():
    flat, _ = expunge.data.digits(flat=True)
    with pytest.raises(ValueError, match=r"images of shape \[N, C, H, W\]"):
        for_generation(flat)
    train, _ = expunge.data.digits()
    with pytest.raises(ValueError, match="outside value_range"):
        for_generation(train, value_range=(0.0, 0.5))
    reg, _ = expunge.data.load_builtin("diabetes")
    with pytest.raises(ValueError, match="class labels"):
        for_generation(reg)


def test_the_schedule_is_ddpm_linear_scaled_to_t_steps():
    a = linear_alphas_cumprod(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(a, torch.cumprod(1 - betas, 0).float())
    short = linear_alphas_cumprod(200)
    assert short[-1] < 1e-3 and torch.all(short[1:] < short[:-1])   # ends in (nearly) pure noise


def test_denoising_loss_is_the_mean_squared_noise_error(images):
    model = tiny()
    x, y = images.x[:4], images.y[:4]
    t, noise = torch.tensor([0, 10, 20, 49]), torch.randn(x.shape)
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x + (1 - a).sqrt() * noise
    with torch.no_grad():
        want = (model.unet(x_t, t, class_labels=y).sample - noise).pow(2).mean((1, 2, 3))
        got = model.denoising_loss(x, y, t=t, noise=noise, reduction="none")
    assert torch.allclose(got, want, atol=1e-6)


def test_train_fits_the_denoising_objective_and_sampling_is_deterministic(small):
    model = expunge.train(tiny(), small, epochs=3, seed=0)
    again = expunge.train(tiny(), small, epochs=3, seed=0)
    for (k, v), w in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k          # bitwise repeatable on the CPU
    recipe = expunge.provenance(model).recipe
    assert recipe["optimizer"] == "adamw" and recipe["epochs"] == 3     # the model's defaults, the caller's epochs
    a = model.sample([0, 1, 2, 3], seed=5, steps=5)
    assert a.shape == (4, 1, 8, 8) and float(a.abs().max()) <= 1.0
    assert torch.equal(a, model.sample([0, 1, 2, 3], seed=5, steps=5))
    assert not torch.equal(a, model.sample([0, 1, 2, 3], seed=6, steps=5))


def test_training_lowers_the_denoising_loss(small):
    model = tiny()
    x, y = small.dataset.x[:48], small.dataset.y[:48]
    t, noise = torch.randint(0, 50, (48,), generator=torch.Generator().manual_seed(0)), torch.randn(48, 1, 8, 8)
    with torch.no_grad():
        before = float(model.denoising_loss(x, y, t=t, noise=noise))
    trained = expunge.train(model, small, epochs=8, lr=5e-3)
    with torch.no_grad():
        after = float(trained.denoising_loss(x, y, t=t, noise=noise))
    assert after < 0.8 * before


def test_oracle_is_a_fresh_model_trained_on_retain(small):
    original = expunge.train(tiny(), small, epochs=1)
    forget, retain = Subset(small.dataset, list(range(48, 56))), small
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain")
    assert isinstance(oracle, DiffusionModel) and expunge.provenance(oracle).method == "retrain"
    fresh = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", epochs=0)
    assert not torch.equal(fresh.unet.conv_in.weight, original.unet.conv_in.weight)


def test_guidance_combines_conditional_and_null_predictions():
    model = tiny().eval()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        c, u = model.eps(x, t, y), model.eps(x, t, torch.full((3,), 10))
        assert torch.allclose(model.guided_eps(x, t, y, guidance=2.0), 3 * c - 2 * u, atol=1e-5)


def test_save_and_load_rebuild_the_model(tmp_path, small):
    model = expunge.train(tiny(), small, epochs=1)
    expunge.save_model(model, tmp_path / "m.safetensors")
    back = expunge.load_model(tmp_path / "m.safetensors")
    assert isinstance(back, DiffusionModel) and back.T == 50
    assert torch.equal(back.sample([7], seed=1, steps=4), model.sample([7], seed=1, steps=4))


def test_a_users_own_unet_and_scheduler_work_through_the_same_api(small, tmp_path):
    from diffusers import DDPMScheduler, UNet2DModel

    net = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                      layers_per_block=1, num_class_embeds=11, norm_num_groups=8)
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    model = DiffusionModel.from_unet(net, 10, scheduler=scheduler)
    assert model.T == 100 and torch.allclose(model.alphas_cumprod, scheduler.alphas_cumprod.float())
    trained = expunge.train(model, small, epochs=1)
    oracle = expunge.unlearn(trained, forget=Subset(small.dataset, [60, 61]), retain=small, method="retrain")
    assert oracle.sample([1, 2], steps=3).shape == (2, 1, 8, 8)
    expunge.save_model(trained, tmp_path / "own.safetensors")
    back = expunge.load_model(tmp_path / "own.safetensors")
    assert torch.equal(back.sample([4], seed=2, steps=3), trained.sample([4], seed=2, steps=3))
    with pytest.raises(ValueError, match="num_class_embeds = n_classes \\+ 1"):
        DiffusionModel.from_unet(UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                             down_block_types=("DownBlock2D", "DownBlock2D"),
                                             up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                                             num_class_embeds=10), 10)
    with pytest.raises(ValueError, match="predicts 'v_prediction'"):
        DiffusionModel.from_unet(net, 10, scheduler=DDPMScheduler(prediction_type="v_prediction"))


def test_a_text_conditioned_unet_and_encoder_built_from_configs(small, tmp_path):
    pytest.importorskip("transformers")
    model = expunge.gen.text_unet([str(i) for i in range(10)], widths=(8, 16), T=50)
    assert not any(p.requires_grad for p in model.conditioner.parameters())      # the text encoder is frozen
    before = model.conditioner.encoder.get_input_embeddings().weight.clone()
    trained = expunge.train(model, small, epochs=1)
    assert torch.equal(trained.conditioner.encoder.get_input_embeddings().weight, before)
    emb = trained.embed(torch.tensor([3, 10]))
    assert emb.shape[0] == 2 and not torch.equal(emb[0], emb[1])       # class 3's prompt vs the empty prompt
    expunge.save_model(trained, tmp_path / "t.safetensors")
    back = expunge.load_model(tmp_path / "t.safetensors")
    assert torch.equal(back.sample([3], seed=0, steps=3), trained.sample([3], seed=0, steps=3))


def test_sampling_can_be_differentiated_with_respect_to_the_conditioning():
    model = tiny()
    emb = model.embed(torch.tensor([3, 3])).detach().clone().requires_grad_(True)
    out = model.sample([3, 3], steps=3, grad=True, embeddings=emb)
    out.sum().backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_the_front_door_refuses_mismatched_models_and_data(images):
    train, _ = expunge.data.digits()
    with pytest.raises(ValueError, match="for_generation"):
        expunge.train(tiny(), train)
    with pytest.raises(ValueError, match="generative model"):
        expunge.train(expunge.model("mlp", train), images)
    with pytest.raises(ValueError, match=r"the images are \(1, 16, 16\)"):
        expunge.train(tiny(), for_generation(train, size=16))
    with pytest.raises(ValueError, match="conditioned on 5 classes"):
        expunge.train(expunge.gen.unet(5, widths=(8, 16)), images)
    with pytest.raises(ValueError, match="does not apply to generative models"):
        expunge.train(tiny(), images, loss="mse")
    with pytest.raises(ValueError, match="out of range"):
        tiny().sample([10 + 1])
    assert np.isfinite(float(tiny()(images.x[:2]).detach().sum()))     # model(images) alone: the probe Method.unlearn uses


def test_bad_factory_arguments_are_refused_in_one_line():
    for kwargs, match in ((dict(n_classes="a"), "n_classes must be an integer"), (dict(T=0), "T must be"),
                          (dict(size=0), "size must be"), (dict(channels=0), "channels must be"),
                          (dict(seed="x"), "seed must be"), (dict(widths=(12, 16)), "multiples of 8")):
        with pytest.raises(ValueError, match=match):
            expunge.gen.unet(**kwargs)
    with pytest.raises(ValueError, match="guidance must be"):
        DiffusionModel(expunge.gen.unet(widths=(8, 16)).unet, 10, guidance=-1)
    with pytest.raises(ValueError, match="whole numbers"):
        tiny().sample([1.5])
    assert expunge.gen.unet(widths=(8, 16), T=20).sample_steps == 20       # never more DDIM steps than T


def test_text_prompts_are_never_cut_and_each_class_keeps_its_own():
    pytest.importorskip("transformers")
    from expunge.gen.diffusion import TextConditioner

    model = expunge.gen.text_unet(["big red dog", "big red cat"], widths=(8, 16), T=20)
    ids = model.conditioner.ids
    assert not torch.equal(ids[0], ids[1])
    with pytest.raises(ValueError, match="at most max_length - 2"):
        TextConditioner(model.conditioner.encoder, ["one two three four five six seven"], max_length=8)
    with pytest.raises(ValueError, match="encode the same"):
        TextConditioner(model.conditioner.encoder, ["a cat", "A cat"])


def test_the_oracle_of_a_text_model_keeps_its_frozen_text_encoder(small):
    pytest.importorskip("transformers")
    model = expunge.gen.text_unet([str(i) for i in range(10)], widths=(8, 16), T=20)
    fresh = model.fresh_copy()
    labels = torch.tensor([1, 2, 10])
    with torch.no_grad():
        assert torch.equal(fresh.embed(labels), model.embed(labels))       # the same text features
    assert not torch.equal(fresh.unet.conv_in.weight, model.unet.conv_in.weight)   # a new UNet


def test_the_reference_cache_sees_changed_sampling_settings(small):
    from expunge.gen.evaluate import evaluate_generation

    model = expunge.train(tiny(), small, epochs=1)
    forget, retain = Subset(small.dataset, list(range(100, 110))), small
    args = dict(forget=forget, retain=retain, samples_per_class=2, attack=False, membership=False)
    first = evaluate_generation(model, reference=model, **args)
    model.sample_steps = 2
    second = evaluate_generation(model, reference=model, **args)
    assert first["gap_unlearning_accuracy"] == 0 and second["gap_unlearning_accuracy"] == 0
    assert first["reference_frechet_retain"] != second["reference_frechet_retain"]    # scored again, not cached
