"""A tiny class-conditional diffusion model for generation tests: scikit-learn's digits 0-3 at 8x8 (576 training
images in [-1, 1]), a ~164k-parameter diffusers ``UNet2DModel`` without attention (widths 16 and 32) trained for
15 epochs (~270 steps of 32, ~10 s on one busy core), its oracle retrained without class 1 by ``retrain``, and a
quick judge of generated images. Built once per test session.

The judge counts a sample as class c when a logistic regression of the real training images assigns it to c *and*
its nearest real training image lies within ``REALISM`` (1.5) times the 99th percentile of the nearest-neighbour
distances of held-out real images: a method that turns a class into blobs has not taught the model another digit,
and a logistic regression alone assigns grey blobs to class 1 with confidence (measured). The original's samples
are judged as their class 96-100% of the time for every class; the oracle's class-1 samples 0%, its other classes
98-100%.

``tiny_gan_task`` is the same data learned by the embedded conditional GAN (``expunge.gen.gan``, ~83k parameters,
30 epochs at lr 1e-3, ~5 s) and its oracle: every class judged 100%, measured."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

N_CLASSES = 4
FORGET_CLASS = 1
REALISM = 1.5
GAN_RECIPE = dict(epochs=30, lr=1e-3)
RECIPE = dict(epochs=15, lr=5e-3, batch_size=32, optimizer="adam", weight_decay=0.0, schedule="cosine",
              warmup=0.0, clip_grad_norm=1.0)


def tiny_unet(n_classes: int = N_CLASSES, seed: int = 0) -> Any:
    """A user's own small diffusers UNet (no attention) wrapped as an ``expunge.gen.DiffusionModel``."""
    from diffusers import UNet2DModel

    from expunge.gen.diffusion import DiffusionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                          block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=n_classes + 1,
                          norm_num_groups=8)
    return DiffusionModel.from_unet(net, n_classes)


@dataclass
class TinyGen:
    data: Any        # digits 0..3, task "generation"
    forget: Any      # every image of FORGET_CLASS
    retain: Any
    original: Any
    oracle: Any
    judge: Any       # sklearn classifier of flattened images in [-1, 1]
    real: torch.Tensor   # the real training images, flattened
    max_distance: float  # farthest a sample's nearest real image may be for the sample to count as a digit

    def accuracy(self, model: Any, n: int = 50, seed: int = 1) -> np.ndarray:
        """Per class, the share of ``n`` samples conditioned on it that look like a real digit and that the judge
        assigns to it."""
        labels = torch.arange(N_CLASSES).repeat_interleave(n)
        images = model.sample(labels, seed=seed).reshape(len(labels), -1).cpu()
        pred = self.judge.predict(images.numpy())
        realistic = (torch.cdist(images, self.real).min(1).values <= self.max_distance).numpy()
        hit = (pred == labels.numpy()) & realistic
        return np.array([float(hit[labels.numpy() == k].mean()) for k in range(N_CLASSES)])


@lru_cache(maxsize=None)
def _digits() -> tuple[Any, Any, Any, Any, torch.Tensor, float, Any]:
    from sklearn.linear_model import LogisticRegression

    import expunge
    from expunge.data import ArrayDataset, for_generation, split_forget

    train, test = expunge.data.digits()
    images, held_out = for_generation(train), for_generation(test)
    keep = images.y < N_CLASSES
    data = ArrayDataset(images.x[keep], images.y[keep], task="generation", name="digits-0-3",
                        class_names=[str(c) for c in range(N_CLASSES)])
    forget, retain = split_forget(data, classes=[FORGET_CLASS])
    real = images.x.reshape(len(images.x), -1)
    nearest = torch.cdist(held_out.x.reshape(len(held_out.x), -1), real).min(1).values
    max_distance = REALISM * float(torch.quantile(nearest, 0.99))
    judge = LogisticRegression(max_iter=3000).fit(data.x.reshape(len(data.x), -1).numpy(), data.y.numpy())
    return data, forget, retain, judge, real, max_distance, expunge


@lru_cache(maxsize=None)
def tiny_generation_task() -> TinyGen:
    data, forget, retain, judge, real, max_distance, expunge = _digits()
    original = expunge.train(tiny_unet(), data, seed=0, **RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return TinyGen(data, forget, retain, original, oracle, judge, real, max_distance)


@lru_cache(maxsize=None)
def tiny_gan_task() -> TinyGen:
    from expunge.gen.gan import gan

    data, forget, retain, judge, real, max_distance, expunge = _digits()
    original = expunge.train(gan(N_CLASSES, size=8, seed=0), data, seed=0, **GAN_RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return TinyGen(data, forget, retain, original, oracle, judge, real, max_distance)
