"""Pieces shared by several methods: losses on named batch parts, relabelling (once or every epoch), fresh
initialisation, the output layer, frozen networks and the forget- or retain-loss gradient at the current weights."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, concatenated, features, first_rows, is_streamed, resolve, targets
from ..devices import model_device, move
from ..per_sample import eval_mode
from ..training import Plan, batches, supervised, task_loss


#: methods that run on streamed data (``expunge.data.StreamedDataset``): they read batches as they train, and their
#: results equal those on the same data in memory; the others read whole forget or retain sets and refuse it
STREAMING_METHODS = frozenset({"boundary_expand", "finetune", "gradient_ascent", "l1_sparse", "neggrad_plus",
                               "random_label", "retrain", "scrub", "ssd"})


def check_streaming(method: str, forget: Dataset, retain: Dataset | None) -> None:
    """Refuse, before any work, a method that reads whole sets when the data is streamed."""
    if method not in STREAMING_METHODS and any(d is not None and len(d) and is_streamed(d)  # type: ignore[arg-type]
                                               for d in (forget, retain)):
        raise ValueError(f"method {method!r} reads whole data sets into memory and the data is streamed "
                         f"(in_memory=False); methods that stream: {', '.join(sorted(STREAMING_METHODS))}")

def supervised_on(part: str, task: str, kind: str = "auto", sign: float = 1.0):
    """loss_fn: ``sign * loss(model(x), y)`` on one named part of the batch."""
    loss = task_loss(kind, task)
    return supervised(lambda out, y: sign * loss(out, y), part)


def random_other_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label for each example, never its true one."""
    if num_classes < 2:
        raise ValueError("random relabelling needs at least two classes")
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def relabelled_union(forget: Dataset, retain: Dataset, new_forget_y: torch.Tensor) -> ArrayDataset:
    """One dataset: the forget set with ``new_forget_y`` followed by the retain set (in memory, or streamed when
    either is streamed: rows read from the two sets, the labels in memory)."""
    base, _ = resolve(retain)
    if is_streamed(forget) or is_streamed(retain):
        return concatenated([forget, retain], torch.cat([new_forget_y.to(base.y.dtype), targets(retain)]))
    x = torch.cat([features(forget), features(retain)])
    y = torch.cat([new_forget_y.to(base.y.dtype), targets(retain)])
    return ArrayDataset(x, y, task=base.task)


def random_label_plan(forget: Dataset, retain: Dataset, batch_size: int, num_classes: int, seed: int) -> Plan:
    """A plan for random-label unlearning: the shuffled union of the forget set and the retain set in batches,
    the forget set's labels redrawn (random other classes) at the start of every epoch, as the OPTML-Group
    reference's ``RL`` does. Epoch ``e``'s labels come from a generator seeded with
    ``expunge.seeds.derive(seed, RANDOM_LABELS, e)``, so they do not depend on the batch order. Batches read labels
    when the loss reads them, so an epoch's batches must be used before the next epoch is laid out (as ``fit``
    does)."""
    from ..seeds import RANDOM_LABELS, derive

    true_y = targets(forget)
    if num_classes < 2:
        raise ValueError("random relabelling needs at least two classes")
    union = relabelled_union(forget, retain, true_y)    # the forget rows' labels are rewritten every epoch
    n_forget = len(true_y)
    shuffled = batches(union, batch_size)

    def plan(epoch: int, g: torch.Generator) -> list:
        labels = torch.Generator().manual_seed(derive(seed, RANDOM_LABELS, epoch))
        union.y[:n_forget] = random_other_labels(true_y, num_classes, labels).to(union.y.dtype)
        return shuffled(epoch, g)
    return plan


def num_outputs(model: nn.Module, dataset: Dataset) -> int:
    from .base import output_size

    return output_size(model, move(first_rows(dataset), model_device(model)))


def squared_distance(model: nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """‖θ − θ0‖² over the parameters named in ``anchor``."""
    return sum(((p - anchor[n]) ** 2).sum() for n, p in model.named_parameters() if n in anchor)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def fresh_initialisation(model: nn.Module, seed: int, init: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer re-initialised under ``seed``.

    Pass a seed of the network's own stream (``expunge.seeds.derive(user_seed, purpose)``), never the user's seed
    itself: under the same seed the built-in architectures re-initialise to exactly the weights
    ``expunge.model(..., seed=user_seed)`` started the original from.

    Uses each module's ``reset_parameters``; a parameter no module resets would keep its trained value (and the
    oracle would remember the forget set), so that is refused: pass ``init=`` (a function building a fresh model)
    for such architectures.

    The fresh weights are drawn on the CPU and then moved to ``model``'s device, so a seed gives the same
    initialisation on every device.
    """
    import copy

    device = model_device(model)
    if init is None and callable(getattr(model, "fresh_copy", None)):
        init = model.fresh_copy          # models that know how to re-initialise themselves (expunge.lm.CausalLM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if init is not None:
            fresh = init()
            if not isinstance(fresh, nn.Module):
                raise TypeError(f"init must return an nn.Module; it returned {type(fresh).__name__}")
            want = {k: v.shape for k, v in model.state_dict().items()}
            got = {k: v.shape for k, v in fresh.state_dict().items()}
            if want != got:
                raise ValueError("init() built a model whose parameters differ from the original's "
                                 f"(first difference: {sorted(set(want.items()) ^ set(got.items()))[:1]})")
            return fresh.to(device)
        fresh = copy.deepcopy(model).to("cpu")
        covered: set[int] = set()
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in m.parameters(recurse=False))
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
        missed = [n for n, p in fresh.named_parameters() if id(p) not in covered]
        if missed:
            raise ValueError(f"cannot re-initialise parameter(s) {missed[:3]}: no module resets them. "
                             "Pass init=<function returning a freshly initialised model> to retrain")
        return fresh.to(device)


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final linear layer and its dotted name: ``model.head`` when present, else the last ``nn.Linear``."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return "head", head
    if isinstance(head, nn.Module):
        raise ValueError(f"model.head is a {type(head).__name__}; the output layer must be an nn.Linear")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"the model ({type(model).__name__}) has no nn.Linear layer; this method needs a final "
                         "nn.Linear output layer (give the model a `head` attribute holding it)")
    return linears[-1]


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter's ``requires_grad`` off (a fixed teacher or auxiliary network)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def ce_gradient(model: nn.Module, data: Dataset, params: dict[str, nn.Parameter] | None = None, *,
                mean: bool = False, chunk: int = 256) -> dict[str, torch.Tensor]:
    """∇θ of the cross-entropy over ``data`` summed over examples (``mean=True``: averaged), at the model's current
    weights in eval mode (each submodule's mode is restored), for ``params`` by name (default: every parameter
    with ``requires_grad``). No step is taken and no ``.grad`` is touched; a parameter the loss does not reach
    gets zeros."""
    if params is None:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    x, y = features(data), targets(data)
    device = model_device(model)
    with eval_mode(model):
        for xs, ys in zip(x.split(chunk), y.split(chunk)):
            loss = F.cross_entropy(model(move(xs, device)), move(ys, device), reduction="sum")
            if mean:
                loss = loss / len(x)
            for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
                if g is not None:
                    grads[n] += g
    return grads
