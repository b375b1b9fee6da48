"""Class-conditional diffusion models (diffusers UNets) with DDPM training and DDIM sampling.

:class:`DiffusionModel` wraps a diffusers ``UNet2DModel`` conditioned on a class embedding whose last row is the
null class of classifier-free guidance (Ho & Salimans, 2022), or a ``UNet2DConditionModel`` conditioned on a text
encoder's hidden states for one prompt per class (the null condition is the empty prompt). Training is DDPM's
(Ho et al., NeurIPS 2020): ε-prediction, a uniformly drawn timestep, the squared error averaged over pixels, the
label dropped to the null class with probability ``p_uncond`` (0.1, as in SalUn's ``DDPM/`` code). Sampling is
DDIM's (Song et al., ICLR 2021; η = 0) over ``sample_steps`` evenly spaced timesteps with the guided prediction
(1 + w)·ε(x, c) − w·ε(x, ∅), w = ``guidance`` (2, as in SalUn's code), the predicted clean image clipped to
[−1, 1] at every step.

The noise schedule: DDPM's linear betas from 1e-4 to 0.02, over T = 200 steps by default (1000 in DDPM; 200
suffice at 8×8 and keep sampling cheap), or the ``alphas_cumprod`` of a user's diffusers scheduler.

The embedded default (:func:`unet`): a ~0.7M-parameter UNet at 8×8 (widths 32 and 64, attention at the lower
resolution). Its recipe (``DiffusionModel.recipe_defaults``): AdamW at lr 2e-3, batches of 128, cosine decay after
5% warmup, gradients clipped at norm 1, 40 epochs. Measured with ``benchmarks/diffusion_recipe.py`` on the 1,437
digits training images (``benchmarks/results/diffusion_recipe.json``): after 20 epochs (33 CPU-s) 95.2% of 500
samples (50 per class) are judged as their class, after 40 epochs (56 CPU-s) 95.4%, by a judge 98.1% accurate on
the test images.
"""
from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import GenerativeModel, labels_tensor


class _Embedding(nn.Embedding):
    """A class embedding that also passes given embedding vectors through (floating-point input), so the UNet can
    be conditioned on any point of the embedding space (the robustness attack searches it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.is_floating_point() else super().forward(x)


def linear_alphas_cumprod(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """ᾱ_t = ∏ (1 − β_s) for DDPM's linear schedule, scaled to T steps as DDPM's 1000-step schedule."""
    scale = 1000 / T
    betas = torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), T, dtype=torch.float64, device="cpu")
    return torch.cumprod(1 - betas, 0).float()


class TextConditioner(nn.Module):
    """One prompt per class encoded by a (frozen) text encoder; the empty prompt is the null condition. Words are
    looked up in a vocabulary built from the prompts (no tokenizer files needed)."""

    def __init__(self, encoder: nn.Module, prompts: list[str], max_length: int = 8):
        super().__init__()
        self.encoder, self.prompts, self.max_length = encoder, list(prompts), int(max_length)
        words = sorted({w for p in self.prompts for w in p.lower().split()})
        self.vocab = {w: i + 3 for i, w in enumerate(words)}        # 0 pad, 1 start, 2 end
        size = getattr(getattr(encoder, "config", None), "vocab_size", None)
        if size is not None and len(self.vocab) + 3 > size:
            raise ValueError(f"the prompts use {len(self.vocab)} words but the text encoder's vocabulary has {size}")
        longest = max(self.prompts, key=lambda p: len(p.split()), default="")
        if len(longest.split()) > self.max_length - 2:
            raise ValueError(f"the prompt {longest!r} has {len(longest.split())} words; at most max_length - 2 = "
                             f"{self.max_length - 2} fit (raise max_length, and the encoder's max_position_embeddings)")
        ids = [self._ids(p) for p in self.prompts + [""]]
        same = [(a, b) for i, a in enumerate(self.prompts) for b in self.prompts[i + 1:] if ids[self.prompts.index(a)]
                == ids[self.prompts.index(b)]]
        if same:
            raise ValueError(f"the prompts {same[0][0]!r} and {same[0][1]!r} encode the same; every class needs a "
                             "prompt of its own")
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device="cpu"), persistent=False)
        encoder.requires_grad_(False)      # frozen, as Stable Diffusion's text encoder (the caller's is frozen too)

    def _ids(self, prompt: str) -> list[int]:
        words = [self.vocab[w] for w in prompt.lower().split()]
        ids = [1, *words, 2]
        return ids + [0] * (self.max_length - len(ids))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=self.ids[labels]).last_hidden_state


class DiffusionModel(GenerativeModel):
    """A class-conditional diffusion model on expunge's ``generation`` task (see the module docstring).

    ``unet``: a diffusers ``UNet2DModel`` with ``num_class_embeds = n_classes + 1`` (the last is the null class),
    or a ``UNet2DConditionModel`` with ``conditioner`` (a :class:`TextConditioner`). ``alphas_cumprod``: the noise
    schedule (default: DDPM's linear one over ``T`` steps)."""

    kind: ClassVar[str] = "diffusion"
    recipe_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.0, "batch_size": 128, "epochs": 40,
        "schedule": "cosine", "warmup": 0.05, "clip_grad_norm": 1.0}

    def __init__(self, unet: nn.Module, n_classes: int, *, T: int = 200, alphas_cumprod: torch.Tensor | None = None,
                 conditioner: nn.Module | None = None, p_uncond: float = 0.1, guidance: float = 2.0,
                 sample_steps: int = 25, factory: dict[str, Any] | None = None):
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer; got {n_classes!r}")
        cfg = getattr(unet, "config", None)
        if cfg is None or not hasattr(cfg, "sample_size"):
            raise TypeError(f"unet must be a diffusers UNet2DModel or UNet2DConditionModel; got {type(unet).__name__}")
        self.text = type(unet).__name__ == "UNet2DConditionModel"
        if self.text:
            if conditioner is None:
                raise ValueError("a UNet2DConditionModel needs conditioner= (expunge.gen.diffusion.TextConditioner)")
            if len(conditioner.prompts) != n_classes:
                raise ValueError(f"the conditioner has {len(conditioner.prompts)} prompts for {n_classes} classes")
        else:
            if getattr(cfg, "num_class_embeds", None) != n_classes + 1:
                raise ValueError(f"the UNet2DModel needs num_class_embeds = n_classes + 1 = {n_classes + 1} (the last "
                                 f"is the null class of classifier-free guidance); it has {cfg.num_class_embeds}")
            old = unet.class_embedding
            unet.class_embedding = _Embedding(old.num_embeddings, old.embedding_dim)
            unet.class_embedding.load_state_dict(old.state_dict())
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        self.unet, self.conditioner = unet, conditioner
        self.n_classes, self.null_class = n_classes, n_classes
        self.image_shape = (int(cfg.in_channels), int(size), int(size))
        if alphas_cumprod is None:
            alphas_cumprod = linear_alphas_cumprod(T)
        alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32, device="cpu").reshape(-1)
        if len(alphas_cumprod) < 2 or not bool(((alphas_cumprod > 0) & (alphas_cumprod < 1)).all()):
            raise ValueError("alphas_cumprod must hold at least 2 values in (0, 1)")
        self.register_buffer("alphas_cumprod", alphas_cumprod)
        self.T = len(alphas_cumprod)
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1); got {p_uncond!r}")
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance < math.inf:
            raise ValueError(f"guidance must be a finite number >= 0; got {guidance!r}")
        if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) or sample_steps < 1:
            raise ValueError(f"sample_steps must be an integer >= 1; got {sample_steps!r}")
        sample_steps = min(sample_steps, self.T)       # DDIM cannot take more steps than the schedule has
        self.p_uncond, self.guidance, self.sample_steps = float(p_uncond), float(guidance), int(sample_steps)
        self.factory = factory
        self.one_step: int | None = None   # a timestep: sample as a one-step generator (score distillation, sfd)

    # --- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_unet(cls, unet: nn.Module, n_classes: int, *, scheduler: Any = None, conditioner: nn.Module | None = None,
                  **kwargs: Any) -> "DiffusionModel":
        """A user's own diffusers UNet (``UNet2DModel`` with ``num_class_embeds = n_classes + 1``, or
        ``UNet2DConditionModel`` with a :class:`TextConditioner`) and, optionally, its diffusers scheduler, whose
        ``alphas_cumprod`` gives the noise schedule (ε-prediction assumed). The UNet is used as given, not copied:
        its class embedding is replaced by one with the same weights that also takes embedding vectors."""
        alphas = None
        if scheduler is not None:
            alphas = getattr(scheduler, "alphas_cumprod", None)
            if alphas is None:
                raise TypeError(f"scheduler {type(scheduler).__name__} has no alphas_cumprod (a DDPM/DDIM scheduler)")
            kind = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
            if kind != "epsilon":
                raise ValueError(f"the scheduler predicts {kind!r}; expunge trains and samples epsilon prediction")
        return cls(unet, n_classes, alphas_cumprod=alphas, conditioner=conditioner, **kwargs)

    def config(self) -> dict[str, Any]:
        base = {"n_classes": self.n_classes, "T": self.T, "p_uncond": self.p_uncond, "guidance": self.guidance,
                "sample_steps": self.sample_steps, **({"one_step": self.one_step} if self.one_step is not None else {})}
        if self.factory is not None:
            return {"factory": self.factory, **base}
        return {"unet_class": type(self.unet).__name__, "unet_config": dict(self.unet.config), **base}

    def fresh_copy(self) -> "DiffusionModel":
        unet = type(self.unet).from_config(self.unet.config)
        # the frozen text encoder is not trained, so the oracle keeps it as it is (retraining re-initialises
        # what training trains: the UNet)
        conditioner = None if self.conditioner is None else copy.deepcopy(self.conditioner)
        return DiffusionModel(unet, self.n_classes, alphas_cumprod=self.alphas_cumprod.detach().cpu().clone(),
                              conditioner=conditioner, p_uncond=self.p_uncond, guidance=self.guidance,
                              sample_steps=self.sample_steps, factory=self.factory).to(self.alphas_cumprod.device)

    # --- the network -------------------------------------------------------------------------------------------
    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        """The conditioning the UNet receives for ``labels`` (``null_class`` allowed): class-embedding vectors, or
        the text encoder's hidden states for the classes' prompts."""
        labels = labels.to(self.alphas_cumprod.device)
        if self.text:
            return self.conditioner(labels)
        return self.unet.class_embedding(labels)

    def eps_embedded(self, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The predicted noise under the conditioning ``emb`` (as :meth:`embed` returns it)."""
        t = _timesteps(t, len(x_t), x_t.device)
        if self.text:
            return self.unet(x_t, t, encoder_hidden_states=emb).sample
        return self.unet(x_t, t, class_labels=emb).sample

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The predicted noise for class ``labels`` (LongTensor [B]; ``null_class`` is the unconditional one)."""
        labels = labels.to(x_t.device)
        if self.text:
            return self.eps_embedded(x_t, t, self.conditioner(labels))
        return self.unet(x_t, _timesteps(t, len(x_t), x_t.device), class_labels=labels).sample

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        """``eps``; ``model(images)`` alone predicts the noise at the middle timestep without a class (the probe
        that checks a method's result for non-finite outputs)."""
        if t is None:
            t = torch.tensor(self.T // 2, device="cpu")
        if labels is None:
            labels = torch.full((len(x_t),), self.null_class, dtype=torch.long, device="cpu")
        return self.eps(x_t, t, labels)

    def guided_eps(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float | None = None,
                   embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free guidance: (1 + w)·ε(x, c) − w·ε(x, ∅), the two in one batch."""
        w = self.guidance if guidance is None else float(guidance)
        n = len(x_t)
        t = _timesteps(t, n, x_t.device)
        cond = self.embed(labels) if embeddings is None else embeddings
        null = self.embed(torch.full((n,), self.null_class, dtype=torch.long, device="cpu"))
        both = self.eps_embedded(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null.to(cond.dtype)]))
        e_c, e_u = both[:n], both[n:]
        return (1 + w) * e_c - w * e_u

    # --- training ----------------------------------------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t].view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def denoising_loss(self, x0: torch.Tensor, labels: torch.Tensor, *, t: torch.Tensor | None = None,
                       noise: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """‖ε − ε_θ(x_t, t, c)‖² averaged over pixels: the batch mean (``reduction="mean"``) or one value per
        example (``"none"``). ``t`` and ``noise`` are drawn from torch's global RNG when not given."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction={reduction!r} is not allowed; expected 'mean' or 'none'")
        dev = x0.device
        if t is None:
            t = torch.randint(0, self.T, (len(x0),), device="cpu").to(dev)
        if noise is None:
            noise = torch.randn(x0.shape, device="cpu").to(dev)
        err = (self.eps(self.add_noise(x0, noise, t), t, labels) - noise).pow(2).flatten(1).mean(1)
        return err.mean() if reduction == "mean" else err

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        drop = torch.rand(len(y), device="cpu").to(y.device) < self.p_uncond
        return self.denoising_loss(x, torch.where(drop, torch.full_like(y, self.null_class), y))

    # --- sampling ----------------------------------------------------------------------------------------------
    def sample(self, labels: Any, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
               grad: bool = False, embeddings: torch.Tensor | None = None, batch_size: int = 500) -> torch.Tensor:
        """DDIM samples (η = 0) for ``labels`` (or for the conditioning ``embeddings``; one network evaluation for
        a distilled one-step generator, ``one_step``), deterministic given ``seed``; images ``[N, C, H, W]`` in [-1, 1]. ``grad=True`` keeps the graph (attacks differentiate
        through sampling); otherwise samples are drawn in chunks of ``batch_size`` without gradients."""
        labels = labels_tensor(labels, self.n_classes, null_ok=True)
        steps = self.sample_steps if steps is None else int(steps)
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be in 1..{self.T}; got {steps}")
        dev = self.alphas_cumprod.device
        noise = torch.randn((len(labels), *self.image_shape), generator=torch.Generator().manual_seed(int(seed)),
                            device="cpu").to(dev)
        was = self.training
        self.eval()
        try:
            if grad:
                return self._ddim(noise, labels.to(dev), steps, guidance, embeddings)
            with torch.no_grad():
                out = [self._ddim(noise[i:i + batch_size], labels[i:i + batch_size].to(dev), steps, guidance,
                                  None if embeddings is None else embeddings[i:i + batch_size])
                       for i in range(0, len(labels), batch_size)]
            return torch.cat(out) if out else noise
        finally:
            self.train(was)

    def one_step_images(self, z: torch.Tensor, labels: torch.Tensor, t: int,
                        embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """The one-step generator of score distillation (SiD; SFD's ``run_generator``): x_t = √(1 − ᾱ_t)·z, then
        x̂_0 = (x_t − √(1 − ᾱ_t)·ε(x_t, t, c)) / √ᾱ_t with the plain conditional prediction (no guidance), not
        clipped; differentiable."""
        a = self.alphas_cumprod[int(t)]
        x_t = (1 - a).sqrt() * z
        emb = self.embed(labels) if embeddings is None else embeddings
        eps = self.eps_embedded(x_t, torch.full((len(z),), int(t), device=z.device), emb)
        return self.predict_x0(x_t, int(t), eps, clip=False)

    def predict_x0(self, x_t: torch.Tensor, t: Any, eps: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """The clean image a noise prediction implies, x̂_0 = (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t, clipped to [−1, 1]
        unless ``clip=False``; ``t`` one timestep (int) or one per image (LongTensor [B])."""
        a = self._abar(t, x_t)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        return x0.clamp(-1, 1) if clip else x0

    def ddim_step(self, x_t: torch.Tensor, t: Any, t_prev: Any, eps: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (η = 0) from timestep ``t`` to ``t_prev`` (None: to the clean image):
        √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε with x̂_0 clipped (:meth:`predict_x0`)."""
        a_prev = self._abar(t_prev, x_t)
        return a_prev.sqrt() * self.predict_x0(x_t, t, eps) + (1 - a_prev).sqrt() * eps

    def _abar(self, t: Any, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t shaped to broadcast over ``like`` (1 for ``t=None``, the end of sampling)."""
        if t is None:
            return torch.ones((), device=like.device)
        a = self.alphas_cumprod[t]
        return a.view(-1, *[1] * (like.ndim - 1)) if a.ndim else a

    def _ddim(self, x: torch.Tensor, labels: torch.Tensor, steps: int, guidance: float | None,
              embeddings: torch.Tensor | None) -> torch.Tensor:
        if self.one_step is not None:      # a distilled one-step generator: steps and guidance do not apply
            return self.one_step_images(x, labels, self.one_step, embeddings).clamp(-1, 1)
        ts = torch.linspace(self.T - 1, 0, steps, device="cpu").round().long().tolist()
        for i, t in enumerate(ts):
            eps = self.guided_eps(x, torch.full((len(x),), t, device=x.device), labels, guidance, embeddings)
            x = self.ddim_step(x, t, ts[i + 1] if i + 1 < len(ts) else None, eps)   # the last step gives x̂_0
        return x


def _timesteps(t: Any, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(t, device=device)
    return t.expand(n) if t.ndim == 0 else t


def _check_build(*, size: int, channels: int, widths: Any, T: int, seed: int, n_classes: int = 1) -> tuple[int, ...]:
    """The factories' arguments checked before anything is built; the widths as a tuple of ints."""
    def whole(name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in {low}..{high}; got {value!r}")
    whole("n_classes", n_classes, 1, 100_000)
    whole("size", size, 4, 256)
    whole("channels", channels, 1, 16)
    whole("T", T, 2, 10_000)
    whole("seed", seed, 0, 2**63 - 1)
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(f"widths must be a list of channel counts, multiples of 8; got {widths!r}")
    widths = tuple(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 8 or w % 8 for w in widths):
        raise ValueError(f"widths must be channel counts that are multiples of 8; got {widths}")
    if size % (2 ** (len(widths) - 1)):
        raise ValueError(f"size {size} must be divisible by 2^(len(widths) - 1) = {2 ** (len(widths) - 1)}")
    return widths


def unet(n_classes: int = 10, *, size: int = 8, channels: int = 1, widths: tuple[int, ...] = (32, 64), T: int = 200,
         seed: int = 0) -> DiffusionModel:
    """The embedded default: a class-conditional diffusers ``UNet2DModel`` (~0.7M parameters at the default
    widths; attention at the lower resolution) with a null class for classifier-free guidance, initialised from
    ``seed``. Needs the ``gen`` extra (``pip install 'expunge[gen]'``)."""
    widths = _check_build(n_classes=n_classes, size=size, channels=channels, widths=widths, T=T, seed=seed)
    UNet2DModel = _diffusers().UNet2DModel
    factory = {"name": "unet", "n_classes": n_classes, "size": size, "channels": channels, "widths": list(widths),
               "T": T}
    down = ["DownBlock2D"] + ["AttnDownBlock2D"] * (len(widths) - 1)
    up = ["AttnUpBlock2D"] * (len(widths) - 1) + ["UpBlock2D"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=widths,
                          down_block_types=tuple(down), up_block_types=tuple(up), layers_per_block=1,
                          num_class_embeds=n_classes + 1, norm_num_groups=8, attention_head_dim=8)
    return DiffusionModel(net, n_classes, T=T, factory=factory)


def text_unet(class_names: list[str], *, size: int = 8, channels: int = 1, widths: tuple[int, ...] = (32, 64),
              T: int = 200, template: str = "a picture of a {}", seed: int = 0) -> DiffusionModel:
    """A tiny text-conditioned diffusion model built from configs, no weights fetched: a ``UNet2DConditionModel``
    with cross-attention and a randomly initialised, frozen ``CLIPTextModel`` (transformers) encoding one prompt
    per class (``template`` filled with the class name). Shows that a text-conditioned UNet, as Stable Diffusion
    uses, goes through the same API."""
    if isinstance(class_names, (str, bytes)) or not class_names:
        raise ValueError(f"class_names must be a non-empty list of names; got {class_names!r}")
    widths = _check_build(size=size, channels=channels, widths=widths, T=T, seed=seed)
    if "{}" not in template:
        raise ValueError(f"template must hold {{}} where the class name goes; got {template!r}")
    d = _diffusers()
    try:
        from transformers import CLIPTextConfig, CLIPTextModel
    except ImportError as e:     # pragma: no cover - depends on the install
        raise ImportError("text_unet's text encoder needs transformers: pip install 'expunge[gen,lm]'") from e

    prompts = [template.format(c) for c in class_names]
    words = {w for p in prompts for w in p.lower().split()}
    length = max(8, max(len(p.split()) for p in prompts) + 2)       # start, words, end
    factory = {"name": "text_unet", "class_names": list(class_names), "size": size, "channels": channels,
               "widths": list(widths), "T": T, "template": template}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(words) + 3, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=length,
                                               pad_token_id=0, bos_token_id=1, eos_token_id=2))
        net = d.UNet2DConditionModel(
            sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=tuple(widths),
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(widths) - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (len(widths) - 1) + ("UpBlock2D",),
            mid_block_type="UNetMidBlock2DCrossAttn", layers_per_block=1, cross_attention_dim=32,
            norm_num_groups=8, attention_head_dim=8)
    return DiffusionModel(net, len(class_names), T=T, conditioner=TextConditioner(encoder, prompts, max_length=length),
                          factory=factory)


def from_config(config: dict[str, Any]) -> DiffusionModel:
    """Rebuild a model from :meth:`DiffusionModel.config` (weights re-initialised; load a state dict after)."""
    cfg = dict(config)
    settings = {k: cfg.pop(k) for k in ("p_uncond", "guidance", "sample_steps", "one_step") if k in cfg}
    factory = cfg.get("factory")
    if factory is not None:
        f = dict(factory)
        name = f.pop("name")
        builders = {"unet": unet, "text_unet": text_unet}
        if name not in builders:
            raise ValueError(f"unknown diffusion factory {name!r}; expected one of {', '.join(builders)}")
        if "widths" in f:
            f["widths"] = tuple(f["widths"])
        model = builders[name](**f)
    else:
        d = _diffusers()
        kind = cfg.get("unet_class")
        if kind != "UNet2DModel":
            raise ValueError(f"a saved {kind} rebuilds only through its factory; UNet2DModel configs are supported")
        model = DiffusionModel(d.UNet2DModel.from_config(cfg["unet_config"]), int(cfg["n_classes"]), T=int(cfg["T"]))
    for k, v in settings.items():
        setattr(model, k, v)
    return model


def _diffusers():
    try:
        import diffusers
    except ImportError as e:     # pragma: no cover - depends on the install
        raise ImportError("diffusion models need the gen extra: pip install 'expunge[gen]' (diffusers)") from e
    return diffusers
