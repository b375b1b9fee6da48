"""RMU (Representation Misdirection for Unlearning): steer a layer's activations on forget text toward a scaled
random direction while keeping its activations on retain text where the original had them.

Paper: Li et al., "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", ICML 2024.
Reference: https://github.com/centerforaisafety/wmdp (``rmu/unlearn.py``, ``rmu/utils.py``); OpenUnlearning's
port, https://github.com/locuslab/open-unlearning (``src/trainer/unlearn/rmu.py``, ``configs/trainer/RMU.yaml``).
Needs: forget and retain sets (questions and answers, or documents) and the frozen original π_ref.

Loss on a zipped forget/retain batch, with h_θ,ℓ the residual stream after decoder layer ℓ (the output of
``model.layers[ℓ]``, read by a forward hook as the reference's ``forward_with_cache`` does) and u a fixed random
unit vector:

    L = A(h_θ,ℓ(x_f), c·u) + α·A(h_θ,ℓ(x_r), h_ref,ℓ(x_r))
    A(h, t) = mean over sequences of  Σ_t m_t · mean_d (h_t,d − t_t,d)²  /  Σ_t m_t

where m marks the labelled tokens (the answer tokens of a question/answer pair, every token but the bos of a
document): the mean over hidden units, masked and averaged per sequence, then over the batch, as OpenUnlearning's
``compute_activation_loss`` does (:func:`activation_loss`, :func:`rmu_loss`). u is drawn uniform in [0, 1)^d, as the
reference's ``torch.rand``, and normalised; it comes from a generator seeded with ``seeds.derive(seed, "rmu-control")``.

Which weights train: as in the WMDP code, only the MLP down-projections (``mlp.down_proj``; the parameter index 6
of a Zephyr layer) of the layers ℓ − 2, ℓ − 1, ℓ (WMDP: ℓ = 7, layers 5, 6, 7 of Zephyr-7B's 32);
``trainable="all"`` trains every weight. With ``lora=`` the adapters train, wherever ``target_modules`` put them.

Defaults, scaled for the ~1M-parameter models trained here (2-4 decoder layers of width 32-128): ``layer=1`` (the
second decoder layer; WMDP's layer 7 sits about a fifth of the way up a 32-layer model, and with 2-4 layers the
second is the shallowest that leaves a layer to train below it), ``steering_coefficient=20`` (the WMDP code's
default ``--steering_coeffs``; the tiny test model's activations have norms of about 4-6 per token, so 20 sends the
forget activations well outside their range), ``alpha=100`` (the WMDP code's
default ``--alpha``; its Zephyr run used c = 6.5, α = 1200), AdamW at lr 1e-2 for 10 epochs of batches of 16 (the
reference: lr 5e-5 for 80-150 batches of 4 on a 7B model; only two or three weight matrices train here, 7-16% of
these models' weights, so its steps are larger than the 1e-3 of the methods that train every weight), no weight
decay (the reference's AdamW defaults to 0.01; only the trained weights are given to the optimiser, and the others
have ``requires_grad`` off while the method runs, so they get no gradient; no ``.grad`` is left on the result).
Grid: layer in {0, 1}, steering_coefficient in {5, 10, 20, 50}, alpha in {10, 100, 1000}, lr in {1e-3, 3e-3, 1e-2},
epochs in {5, 10, 20}.

Deviations and the OpenUnlearning differences: (a) the WMDP code averages the squared error over every position of
the batch (``mse_loss``), padding included, and steers every token of its documents; here, as in OpenUnlearning,
the error is masked to labelled tokens and averaged per sequence. (b) The paper writes the squared L2 norm over
hidden units; both codes take the mean over them (a factor d absorbed into c² and α). (c) OpenUnlearning's class
default steering coefficient is 20, its ``RMU.yaml`` sets 300 with α = 1000 (earlier versions: 2) and the same
layers 5-7 as the WMDP code; it caches the control vector on the trainer. (d) The
retain term here is always the activation distance to π_ref (OpenUnlearning's ``EMBED_DIFF``; it also offers an
NLL retain term).

The conformance suite's row (``tests/conformance/test_language_methods.py``) uses settings for its tiny
question/answer task, not these defaults.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from ..seeds import derive
from ..training import Batch, StepContext, zipped
from ._language import LanguageArgs, LanguageMethod
from .base import Needs, register

CONTROL_VECTOR = "rmu-control"
TRAINABLE = ("down_proj", "all")
TRAINED_LAYERS = 3            # ℓ − 2 .. ℓ, as the WMDP code's --layer_ids 5,6,7 for --layer_id 7


def activation_loss(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of the masked mean over tokens of the mean squared error over hidden units (see the
    module docstring). ``h``, ``target``: [B, L, d]; ``mask``: [B, L] (True where a token counts)."""
    per_token = (h.float() - target.float()).pow(2).mean(-1)                 # [B, L]
    m = mask.to(per_token.dtype)
    return ((per_token * m).sum(1) / m.sum(1).clamp_min(1)).mean()


def rmu_loss(forget_h: torch.Tensor, forget_mask: torch.Tensor, retain_h: torch.Tensor,
             retain_reference_h: torch.Tensor, retain_mask: torch.Tensor, control: torch.Tensor, *,
             alpha: float) -> torch.Tensor:
    """A(h_f, c·u) + α·A(h_r, h_ref,r): ``control`` is the steering target c·u, a vector [d]."""
    return (activation_loss(forget_h, control.expand_as(forget_h), forget_mask)
            + alpha * activation_loss(retain_h, retain_reference_h, retain_mask))


def control_vector(dim: int, coefficient: float, seed: int) -> torch.Tensor:
    """c·u with u uniform in [0, 1)^dim, normalised, drawn under ``derive(seed, "rmu-control")``."""
    g = torch.Generator().manual_seed(derive(seed, CONTROL_VECTOR))
    u = torch.rand(dim, generator=g, device="cpu")
    return coefficient * u / u.norm()


@contextmanager
def layer_output(layer: nn.Module) -> Iterator[list]:
    """Collects the output of ``layer`` (its first element when it returns a tuple) on every forward pass."""
    seen: list[torch.Tensor] = []

    def hook(module, inputs, output):
        seen.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@contextmanager
def training_only(model: nn.Module, params: list[nn.Parameter]) -> Iterator[nn.Module]:
    """``model`` with ``requires_grad`` off on every parameter outside ``params`` (the flags are restored on exit),
    so the weights the optimiser does not update get no gradient computed or accumulated; on exit every parameter's
    ``.grad`` is cleared, so the returned model carries none."""
    chosen = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            if id(p) not in chosen:
                p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None


def activations(model: nn.Module, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream after decoder layer ``layer`` of ``model`` (a CausalLM) on ``ids``, [B, L, d]."""
    with layer_output(model.decoder_layers()[layer]) as seen:
        model(ids)
    return seen[-1]


@dataclass
class RMUArgs(LanguageArgs):
    epochs: int = 10
    lr: float = 1e-2
    weight_decay: float = 0.0
    layer: int = 1
    steering_coefficient: float = 20.0
    alpha: float = 100.0
    trainable: str = "down_proj"


@register
class RMU(LanguageMethod):
    name = "rmu"
    summary = "Steer a layer's activations on forget text toward a scaled random direction; keep retain activations."
    paper = "Li et al., The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning, ICML 2024"
    reference = "https://github.com/centerforaisafety/wmdp"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    needs_reference = True
    Args = RMUArgs
    grid = {"layer": [0, 1], "steering_coefficient": [5.0, 10.0, 20.0, 50.0], "alpha": [10.0, 100.0, 1000.0],
            "lr": [1e-3, 3e-3, 1e-2], "epochs": [5, 10, 20]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("layer", a.layer >= 0, "a decoder layer index >= 0"),
                     ("steering_coefficient", a.steering_coefficient > 0, "a number > 0"),
                     ("alpha", a.alpha >= 0, "a number >= 0 (the retain term's weight)"),
                     ("trainable", a.trainable in TRAINABLE, f"one of {', '.join(TRAINABLE)}"))

    def trained_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The weights RMU updates (see the module docstring); ValueError when the model has none of them."""
        a = self.args
        params = [p for p in model.parameters() if p.requires_grad]
        if a.lora is not None or a.trainable == "all":
            return params
        layers = model.decoder_layers()
        chosen = [p for i in range(max(0, a.layer - TRAINED_LAYERS + 1), a.layer + 1)
                  for n, p in layers[i].named_parameters()
                  if p.requires_grad and (n.endswith("down_proj.weight") or n.endswith("down_proj"))]
        if not chosen:
            raise ValueError(f"method {self.name!r}: trainable='down_proj' found no MLP down-projection (down_proj) in "
                             f"decoder layers up to {a.layer}; use trainable='all'")
        return chosen

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        from ..devices import model_device

        a = self.args
        n_layers = len(model.decoder_layers())
        if a.layer >= n_layers:
            raise ValueError(f"method {self.name!r}: layer={a.layer} is not allowed; this model has decoder layers "
                             f"0..{n_layers - 1}")
        params = self.trained_parameters(model)
        control = control_vector(int(model.config.hidden_size), a.steering_coefficient, seed).to(model_device(model))
        reference = self.frozen_original()

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            with torch.no_grad():
                ref_h = activations(reference, r.x, a.layer)
            return rmu_loss(activations(m, f.x, a.layer), f.y != -100, activations(m, r.x, a.layer), ref_h,
                            r.y != -100, control.to(ref_h.dtype), alpha=a.alpha)

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        with training_only(model, params):
            return self.fit_language(model, plan, loss_fn, seed, params=params)
