"""WAGLE's weight attribution: which weights of a language model to update when unlearning.

Paper: Jia et al., "WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in Large Language
Models", NeurIPS 2024. Reference: https://github.com/OPTML-Group/WAGLE (``src/unlearn/generate_mask.py``,
``GenerateMask.snip_advanced``; the TOFU configs ``configs/unlearn/Tofu/*+WAGLE.json``).

The paper attributes the unlearning objective to each weight through a bi-level view (unlearning on top, utility
retention on the retain set below) and, approximating the retain loss's Hessian by a diagonal γ·I, obtains the
closed-form score

    S(θ) = (θ − ∇ℓ_r(θ) / γ) ⊙ ∇ℓ_f(θ)

(a pruning-like sensitivity θ ⊙ ∇ℓ_f plus a utility-retention term −∇ℓ_r ⊙ ∇ℓ_f / γ). The mask keeps the ``ratio``
fraction of weights with the largest |S|, ranked over all parameters together (embeddings and norms included, as
the reference ranks every ``named_parameters`` entry); only those are updated by the unlearning method.

Here ℓ_f and ℓ_r are the mean next-token NLL over every answer token of the whole forget and retain set
(:func:`expunge.lm.losses.lm_loss`), taken at the original weights in eval mode; the reference's mask script also
uses the plain NLL of the forget set for ℓ_f, whatever the unlearning method (the sign of ℓ_f does not change |S|).
γ = 1e-6, the ``mu`` of the reference's TOFU and WMDP configs.

Deviations: (a) the reference sums the gradients of per-batch mean losses (so a short last batch weighs more); here
each gradient is that of the mean over the whole set, accumulated over batches weighted by their token counts.
(b) The reference keeps ``int(ratio · n)`` weights and breaks ties by ``argsort`` order; here round(ratio · n),
ties broken by position (:func:`expunge.methods.salun.top_fraction_mask`). The score is deterministic, so ``seed``
does not change the mask.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

GAMMA = 1e-6          # the Hessian-diagonal constant γ (the reference configs' ``mu``)
BATCH = 32            # sequences per forward pass while accumulating gradients


def mean_nll_gradient(model: nn.Module, data: Dataset, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """The gradient, with respect to ``params``, of the mean next-token NLL over every labelled token of ``data``
    (all of it, in batches; parameters the loss does not reach get zeros)."""
    from ..data.datasets import resolve
    from ..devices import model_device, move
    from ..lm.losses import IGNORE, token_nll

    base, idx = resolve(data)
    device = model_device(model)
    total_tokens = int((base.y[idx][:, 1:] != IGNORE).sum())
    if total_tokens == 0:
        raise ValueError("the data has no labelled tokens, so its loss has no gradient")
    names, tensors = list(params), list(params.values())
    grads = [torch.zeros_like(p) for p in tensors]
    was_training = model.training
    model.eval()
    try:
        for chunk in idx.split(BATCH):
            x, y = move(base.x[chunk], device), move(base.y[chunk], device)
            loss = token_nll(model(x), y).sum() / total_tokens
            for g, d in zip(grads, torch.autograd.grad(loss, tensors, allow_unused=True)):
                if d is not None:
                    g.add_(d)
    finally:
        model.train(was_training)
    return dict(zip(names, grads))


def wagle_scores(model: nn.Module, forget: Dataset, retain: Dataset, *,
                 gamma: float = GAMMA) -> dict[str, torch.Tensor]:
    """|S| = |(θ − ∇ℓ_r / γ) ⊙ ∇ℓ_f| for every trainable parameter of ``model`` (see the module docstring)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grad_f = mean_nll_gradient(model, forget, params)
    grad_r = mean_nll_gradient(model, retain, params)
    with torch.no_grad():
        return {n: ((p.detach() - grad_r[n] / gamma) * grad_f[n]).abs() for n, p in params.items()}


def wagle_masks(model: nn.Module, forget: Dataset, retain: Dataset | None, *, ratio: float, seed: int,
                gamma: float = GAMMA) -> dict[str, torch.Tensor]:
    """0/1 masks (in each parameter's dtype) per parameter name of ``model``: 1 on the ``ratio`` fraction of weights
    with the largest WAGLE score |S|, ranked over all parameters together. ``seed`` is accepted for the common
    mask interface; the score has no randomness."""
    from .salun import top_fraction_mask

    if retain is None or len(retain) == 0:  # type: ignore[arg-type]
        raise ValueError("mask='wagle' needs retain data (its attribution score uses the retain loss's gradient); "
                         "pass retain=...")
    if not 0 < ratio <= 1:
        raise ValueError(f"mask ratio={ratio!r} is not allowed; expected a fraction in (0, 1]")
    if not gamma > 0:
        raise ValueError(f"wagle gamma={gamma!r} is not allowed; expected a number > 0")
    scores = wagle_scores(model, forget, retain, gamma=gamma)
    params = dict(model.named_parameters())
    return {n: m.to(params[n].dtype) for n, m in top_fraction_mask(scores, ratio).items()}
