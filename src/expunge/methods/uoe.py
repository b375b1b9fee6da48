"""UOE: unlearn one expert of a mixture-of-experts language model, with the router anchored to it.

Paper: Zhuang, Zhang, Guo, Jia, Liu, Liu and Zhang, "UOE: Unlearning One Expert Is Enough For Mixture-of-experts
LLMs", 2025 (arXiv 2411.18797; published at ACL 2025 as "SEUF: Is Unlearning One Expert Enough for
Mixture-of-Experts LLMs?"). No reference code was released; this follows the paper's description.
Needs: forget and retain sets (questions and answers) and a mixture-of-experts model (decoder layers whose MLP has
a router ``gate`` and ``experts``: Mixtral, Qwen-MoE, ``expunge.lm.moe``); any other model is refused.

1. Expert attribution: the forget set runs through the original; in every MoE layer l the router's affinity of
   expert e is its softmax probability p_l(e | token), averaged over the forget set's labelled (answer) tokens. The
   target is the single (layer, expert) pair with the highest affinity (``layer=`` fixes the layer and picks the
   expert there), the expert the router sends forget tokens to most; the method keeps it as ``target``.
2. Unlearning only that expert: its weights (its slice of the fused ``experts.gate_up_proj`` / ``down_proj``
   tensors, or its module when experts are separate modules) and, under top-k > 1 routing, the router of its layer
   train; every other weight
   is left out of the optimiser (with ``requires_grad`` off while the method runs, so it gets no gradient; no
   ``.grad`` is left on the result), and the other experts' slices of the fused tensors get zero gradient and are
   restored after every step (so weight decay cannot move them either).
3. Loss on a zipped forget/retain batch: GradDiff's ``−NLL_f + α·NLL_r`` (``grad_diff``'s :func:`grad_diff_loss`;
   the paper applies UOE on top of GA, GradDiff, NPO and RMU and reports GradDiff among its main settings) plus the
   router anchor

       λ·A,  A = mean over the labelled tokens of both batches of mean_e (z_e − z0_e)²

   with z the target layer's router logits and z0 the original router's on the same tokens (:func:`router_anchor_loss`,
   :func:`uoe_loss`). Nothing below that router trains, so its input is the original's and z0 = x·W0ᵀ from the
   original router weight W0 (no second model is needed). The paper's observation is that unlearning makes the
   router shift tokens away from the targeted expert to other experts, so the knowledge is bypassed rather than
   removed and the other experts (and utility) suffer; the anchor keeps the router's choices, so the targeted expert
   stays active for the forget tokens while it is unlearned and traffic does not move to the other experts. With
   top-k > 1 routing the anchor resists the shift the NLL terms push for. With top-1 routing the router gets no
   gradient from the NLL terms (its one weight is renormalised to p/p = 1; only rounding noise remains, which Adam's
   normalisation would turn into full-size steps), so the router is left out of the optimiser and stays the
   original's, the anchor's optimum.

Defaults, scaled for the tiny models trained here (the paper unlearns 7B-16B MoE models at lr around 1e-5 with
AdamW): α = 1 (GradDiff's retain weight), λ = 1, AdamW at lr 3e-3 without weight decay (one expert, a few percent of
a tiny model's weights, trains, so the steps are larger than the 1e-3 of the methods that train every weight), 10
epochs of batches of 16, clipping at norm 1.
Grid: lr in {1e-3, 3e-3, 1e-2}, epochs in {5, 10, 20}, alpha in {0.5, 1, 2}. The anchor weight λ is not in the grid:
it acts only under top-k > 1 routing (with top-1 routing the router does not train, so the anchor term is a
constant and λ changes nothing); to tune it on such a model, search it explicitly, e.g.
``expunge.tuning.tune("uoe", ..., space={..., "anchor": [0.1, 1.0, 10.0]})``.

Deviations: (a) the target is the one (layer, expert) pair with the highest mean affinity over all MoE layers,
unless ``layer=`` is given. (b) The anchor is written as the squared distance of the target layer's router logits to
the original's on forget and retain tokens: like the paper's anchor it keeps the targeted expert active on the
forget tokens, and it also keeps the rest of that layer's routing. (c) ``lora=`` and ``mask=`` are refused: the
method chooses its own weights. The conformance suite (``tests/conformance/test_language_methods.py``) runs it on a
tiny mixture-of-experts task with its own settings, not these defaults.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..training import Batch, StepContext, zipped
from ._language import LanguageArgs, LanguageMethod, logits_of
from .base import Needs, register
from .grad_diff import grad_diff_loss
from .rmu import training_only


def moe_blocks(model: nn.Module) -> dict[int, nn.Module]:
    """The mixture-of-experts blocks of a CausalLM by decoder-layer index: the layer's MLP (``mlp`` or
    ``block_sparse_moe``) when it has a router ``gate`` and ``experts``."""
    out = {}
    for i, layer in enumerate(model.decoder_layers()):
        for attr in ("mlp", "block_sparse_moe"):
            block = getattr(layer, attr, None)
            if block is not None and hasattr(block, "gate") and hasattr(block, "experts"):
                out[i] = block
                break
    return out


def num_experts(block: nn.Module) -> int:
    experts = block.experts
    if isinstance(experts, nn.ModuleList):
        return len(experts)
    n = getattr(experts, "num_experts", None)
    return int(n) if n is not None else int(router_weight(block).shape[0])


def router_weight(block: nn.Module) -> nn.Parameter:
    return block.gate.weight


def top_k(model: nn.Module, block: nn.Module) -> int:
    """How many experts the router of ``block`` sends each token to."""
    for owner, attr in ((block.gate, "top_k"), (block, "top_k"), (model.config, "num_experts_per_tok")):
        k = getattr(owner, attr, None)
        if isinstance(k, int):
            return k
    raise ValueError("cannot tell how many experts the router selects per token (no top_k or num_experts_per_tok)")


def expert_masks(model: nn.Module, block: nn.Module, expert: int) -> dict[str, torch.Tensor]:
    """0/1 masks, by ``model``'s parameter names, over the expert weights of ``block``: 1 on ``expert``'s slice of
    each fused tensor (first dimension = experts) or on all of its module's weights, 0 on the other experts'."""
    names = {id(p): n for n, p in model.named_parameters()}
    n_experts = num_experts(block)
    masks = {}
    experts = block.experts
    if isinstance(experts, nn.ModuleList):
        for e, module in enumerate(experts):
            for p in module.parameters():
                masks[names[id(p)]] = torch.full_like(p, float(e == expert))
        return masks
    for p in experts.parameters():
        if p.ndim < 1 or p.shape[0] != n_experts:
            raise ValueError(f"cannot tell which slice of the fused expert tensor {names[id(p)]} "
                             f"{tuple(p.shape)} belongs to one expert (expected {n_experts} along its first dimension)")
        m = torch.zeros_like(p)
        m[expert] = 1
        masks[names[id(p)]] = m
    return masks


def _router_output(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def all_router_logits(blocks: dict[int, nn.Module], *, inputs: bool = False) -> Iterator[dict[int, list]]:
    """Collects, per block, the router's logits [tokens, experts] on every forward pass (a transformers router
    returns ``(logits, weights, indices)``; a plain linear router returns the logits); with ``inputs``, pairs
    ``(router input [tokens, d], logits)``."""
    handles, caught = [], {}
    for i, block in blocks.items():
        caught[i] = []

        def hook(module, args, output, store=caught[i]):
            logits = _router_output(output)
            store.append((args[0].reshape(-1, args[0].shape[-1]), logits) if inputs else logits)
        handles.append(block.gate.register_forward_hook(hook))
    try:
        yield caught
    finally:
        for h in handles:
            h.remove()


def expert_affinity(model: nn.Module, data: Dataset, batch_size: int = 32) -> dict[int, torch.Tensor]:
    """Per MoE layer, the router's mean probability of each expert over the labelled tokens of ``data`` [experts]."""
    from ..data.datasets import resolve
    from ..devices import model_device, move
    from ..lm.losses import IGNORE

    blocks = moe_blocks(model)
    base, idx = resolve(data)
    device = model_device(model)
    sums = {i: torch.zeros(num_experts(b), dtype=torch.float64, device=device) for i, b in blocks.items()}
    count = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in idx.split(batch_size):
                x, y = move(base.x[chunk], device), move(base.y[chunk], device)
                keep = (y != IGNORE).reshape(-1)
                with all_router_logits(blocks) as caught:
                    model(x)
                for i, logits in caught.items():
                    probs = F.softmax(logits[-1].float(), dim=-1)[keep]
                    sums[i] += probs.sum(0).double()
                count += int(keep.sum())
    finally:
        model.train(was_training)
    return {i: (s / max(count, 1)).float() for i, s in sums.items()}


def target_expert(affinity: dict[int, torch.Tensor], layer: int | None = None) -> tuple[int, int]:
    """(layer, expert) with the highest affinity, over all MoE layers or in ``layer``; ties go to the first."""
    layers = [layer] if layer is not None else sorted(affinity)
    best = max(((float(affinity[i].max()), -i, i, int(affinity[i].argmax())) for i in layers))
    return best[2], best[3]


def router_anchor_loss(logits: torch.Tensor, original_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens where ``mask`` is True of the mean squared difference between the router's logits and
    the original router's, ``[tokens, experts]`` each; ``mask`` [tokens]."""
    per_token = (logits.float() - original_logits.float()).pow(2).mean(-1)
    keep = mask.reshape(-1)
    return per_token[keep].mean() if bool(keep.any()) else per_token.sum() * 0.0


def uoe_loss(forget_logits: torch.Tensor, forget_labels: torch.Tensor, retain_logits: torch.Tensor,
             retain_labels: torch.Tensor, router: torch.Tensor, original_router: torch.Tensor,
             router_mask: torch.Tensor, *, alpha: float, anchor: float) -> torch.Tensor:
    """−NLL_f + α·NLL_r + λ·A (see the module docstring): ``router``/``original_router`` are the target layer's router
    logits [tokens, experts] on the forget and retain batches' tokens, ``router_mask`` [tokens] their labelled ones."""
    return (grad_diff_loss(forget_logits, forget_labels, retain_logits, retain_labels, gamma=1.0, alpha=alpha)
            + anchor * router_anchor_loss(router, original_router, router_mask))


@dataclass
class UOEArgs(LanguageArgs):
    epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 0.0
    alpha: float = 1.0
    anchor: float = 1.0
    layer: int | None = None


@register
class UOE(LanguageMethod):
    name = "uoe"
    summary = "Mixture-of-experts models: unlearn only the expert the router sends forget tokens to, router anchored."
    paper = "Zhuang et al., UOE: Unlearning One Expert Is Enough For Mixture-of-experts LLMs, 2025 (ACL 2025: SEUF)"
    reference = "https://arxiv.org/abs/2411.18797"
    needs = Needs(retain=True, labels=True, forget_labels=True)
    Args = UOEArgs
    grid = {"lr": [1e-3, 3e-3, 1e-2], "epochs": [5, 10, 20], "alpha": [0.5, 1.0, 2.0]}

    def validate(self) -> None:
        super().validate()
        a = self.args
        self.require(("alpha", a.alpha >= 0, "a number >= 0 (the retain term's weight)"),
                     ("anchor", a.anchor >= 0, "a number >= 0 (the router anchor's weight)"),
                     ("layer", a.layer is None or a.layer >= 0, "None or a decoder layer index >= 0"),
                     ("lora", a.lora is None, "None: uoe trains one expert's own weights"),
                     ("mask", a.mask is None, "None: uoe chooses its own weights (one expert)"))

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        from ..lm.losses import IGNORE

        a = self.args
        blocks = moe_blocks(model)
        if not blocks:
            raise ValueError(f"method {self.name!r} unlearns mixture-of-experts models (decoder layers whose MLP has a "
                             f"router `gate` and `experts`); {type(model.hf).__name__} has none")
        if a.layer is not None and a.layer not in blocks:
            raise ValueError(f"method {self.name!r}: layer={a.layer} is not allowed; the mixture-of-experts layers of "
                             f"this model are {sorted(blocks)}")
        layer, expert = target_expert(expert_affinity(model, forget, a.batch_size), a.layer)
        self.target = (layer, expert)
        block = blocks[layer]
        masks = expert_masks(model, block, expert)
        by_name = dict(model.named_parameters())
        router = router_weight(block)
        params = [by_name[n] for n in masks if not bool((masks[n] == 0).all())]
        params += [router] if top_k(model, block) > 1 else []
        self._lm_masks = {n: m for n, m in masks.items() if not bool((m == 1).all())}
        original_router = router.detach().clone()

        def loss_fn(m: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
            f, r = batch["forget"], batch["retain"]
            with all_router_logits({layer: block}, inputs=True) as seen:
                forget_logits, retain_logits = logits_of(m, f), logits_of(m, r)
            (xf, lf), (xr, lr) = seen[layer][-2:]
            # nothing below the router of the target layer trains, so its input is the original's and the original
            # router's logits are that input times the original router weight
            now = torch.cat([lf, lr])
            before = F.linear(torch.cat([xf, xr]).detach(), original_router).to(now.dtype)
            mask = torch.cat([(f.y != IGNORE).reshape(-1), (r.y != IGNORE).reshape(-1)])
            return uoe_loss(forget_logits, f.y, retain_logits, r.y, now, before, mask, alpha=a.alpha,
                            anchor=a.anchor)

        plan = zipped(("forget", forget, a.batch_size), ("retain", retain, a.batch_size))
        with training_only(model, params):
            return self.fit_language(model, plan, loss_fn, seed, params=params)
