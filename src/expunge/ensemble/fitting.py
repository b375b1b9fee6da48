"""Training K members at once through the one training loop, ``expunge.training.fit``.

The ensemble is presented to ``fit`` as a single model (:class:`~expunge.ensemble.stacked.Ensemble`):

- the plan lays out each epoch as batches whose ``"data"`` part holds a ``[K, B]`` index tensor: member k's batch
  order is ``torch.randperm`` from its own generator seeded with ``seeds[k]``, exactly the order ``fit`` gives a
  model trained alone with that seed, so member k sees the batches it would have seen alone;
- the loss is the sum over members of each member's mean loss on its own batch (members share no parameters, so
  each receives exactly its own gradient);
- SGD (momentum, weight decay), Adam and AdamW are elementwise, so their state is per member; the learning-rate
  schedule depends only on progress, which all members share;
- gradient-norm clipping is per member (a grad hook computing each member's norm over its own slices), never
  global across members;
- the optimiser uses PyTorch's fused kernels (one pass over each stacked parameter), and glibc is asked to keep
  freed memory (:mod:`expunge._memory`): both matter on CPU, where a step's arithmetic is cheap.

Members must train on equally many examples, so that each takes the same number of steps per epoch as it would
alone; unequal subsets raise ValueError.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import ArrayDataset, resolve
from ..devices import check_precision, model_device, move, run_precision, run_scope, target_device
from ..methods._common import fresh_initialisation
from ..methods.base import output_size
from ..provenance import stamp
from ..training import Batch, DivergenceError, Part, Recipe, StepContext, fit, task_loss
from .._memory import hold_freed_memory
from .stacked import Ensemble

MemberData = Dataset | Sequence[Dataset]


def member_rows(data: MemberData, members: int, masks: Any = None) -> tuple[ArrayDataset, torch.Tensor]:
    """``(base, rows)``: row k of ``rows`` lists, in order, the base-dataset indices member k trains on.

    ``data`` is one dataset (every member uses all of it, or the examples ``masks[k]`` marks, ``masks`` being a
    boolean ``[K, len(data)]`` array) or a sequence of K datasets over one base dataset (e.g. K retain sets).
    """
    if isinstance(data, (list, tuple)):
        if masks is not None:
            raise ValueError("give either masks with one dataset or one dataset per member, not both")
        if len(data) != members:
            raise ValueError(f"got {len(data)} dataset(s) for {members} member(s); give one per member or one "
                             "dataset for all")
        resolved = [resolve(d) for d in data]
        base = resolved[0][0]
        if any(b is not base for b, _ in resolved):
            raise ValueError("the members' datasets must be subsets of one base dataset (e.g. all split from the "
                             "same training set)")
        rows = [idx for _, idx in resolved]
    else:
        base, idx = resolve(data)
        if masks is None:
            rows = [idx] * members
        else:
            m = torch.as_tensor(masks)
            if m.dtype != torch.bool or tuple(m.shape) != (members, len(idx)):
                raise ValueError(f"masks must be a boolean array of shape [members, len(data)] = "
                                 f"[{members}, {len(idx)}]; got {str(m.dtype).replace('torch.', '')} of shape "
                                 f"{list(m.shape)}")
            rows = [idx[r] for r in m]
    sizes = [len(r) for r in rows]
    if len(set(sizes)) > 1:
        shown = sizes if len(sizes) <= 8 else f"{sizes[:8]}..."
        raise ValueError(f"ensemble members must train on equally many examples (so each takes as many steps as it "
                         f"would alone); got subset sizes {shown}. Use half_masks for balanced random halves")
    if sizes[0] == 0:
        raise ValueError("the members' training data is empty")
    return base, torch.stack(rows)


def member_batches(base: ArrayDataset, rows: torch.Tensor, seeds: Sequence[int], batch_size: int):
    """A plan: each epoch, member k's subset in the order ``randperm`` draws from a generator seeded with
    ``seeds[k]``, cut into batches; each batch's ``"data"`` part holds ``[K, B]`` indices."""
    k, n = rows.shape
    gens: list[torch.Generator] = []

    def plan(epoch: int, g: torch.Generator) -> list[Batch]:
        if epoch == 0:
            gens[:] = [torch.Generator().manual_seed(int(s)) for s in seeds]
        order = torch.stack([torch.randperm(n, generator=gk, device="cpu") for gk in gens])
        idx = rows.gather(1, order)
        return [Batch({"data": Part(base, i, p)})
                for i, p in zip(idx.split(batch_size, 1), order.split(batch_size, 1))]
    return plan


def member_loss(kind: str, task: str, name: str) -> Callable[[nn.Module, Batch, StepContext], torch.Tensor]:
    """The sum over members of each member's mean loss on its own batch (``kind`` as in ``Recipe.loss``)."""
    elementwise = task_loss(kind, task, reduction="none")   # member k's loss: the mean over its batch

    def loss_fn(model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        part = batch["data"]
        out, y = model(part.x), part.y
        losses = elementwise(out.flatten(0, 1), y.flatten(0, 1)).reshape(len(y), -1).mean(1)
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            which = bad.nonzero().flatten().tolist()
            raise DivergenceError(f"{name}: the loss of member(s) {which[:8]} became non-finite at epoch "
                                  f"{ctx.epoch + 1}, step {ctx.step + 1}; lower the learning rate or the epochs")
        return losses.sum()
    return loss_fn


def clip_members(max_norm: float) -> Callable[[nn.Module], None]:
    """A grad hook scaling each member's gradient to total norm at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_`` does for a model alone)."""
    def hook(model: nn.Module) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.ndim - 1))))
    return hook


def fit_members(starts: Sequence[nn.Module], data: MemberData, *, seeds: Sequence[int], recipe: Recipe,
                masks: Any = None, name: str = "ensemble", hold_memory: bool = True) -> Ensemble:
    """Train copies of ``starts`` (member k starts from ``starts[k]``) together, each on its own data (as in
    :func:`member_rows`) with its own seed. Member k equals ``fit(copy of starts[k], batches(its data,
    batch_size), recipe=recipe, seed=seeds[k])`` up to floating-point rounding. Returns the trained
    :class:`Ensemble`; its records are copies of the starts' (callers stamp them). ``hold_memory``: first call
    :func:`~expunge._memory.hold_freed_memory` (process-wide; see there)."""
    seeds = check_seeds(seeds, len(starts))
    base, rows = member_rows(data, len(seeds), masks)
    return _fit_rows(starts, base, rows, seeds, recipe, name, hold_memory)


def _fit_rows(starts: Sequence[nn.Module], base: ArrayDataset, rows: torch.Tensor, seeds: list[int],
              recipe: Recipe, name: str, hold_memory: bool) -> Ensemble:
    if hold_memory:
        hold_freed_memory()
    ens = Ensemble(starts, seeds=seeds)
    hooks = [clip_members(recipe.clip_grad_norm)] if recipe.clip_grad_norm else []
    fit(ens, member_batches(base, rows, seeds, recipe.batch_size),
        recipe=dataclasses.replace(recipe, clip_grad_norm=None), loss_fn=member_loss(recipe.loss, base.task, name),
        task=base.task, seed=seeds[0], name=name, grad_hooks=hooks, fused=_fusable(ens))
    ens.set_training_data(base, rows)
    return ens


def _fusable(model: nn.Module) -> bool:
    """Whether PyTorch's fused optimiser kernels support every parameter (CPU or CUDA, float32 or float64)."""
    return all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
               for p in model.parameters())


def check_seeds(seeds: Sequence[int], members: int | None = None) -> list[int]:
    try:
        out = list(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a sequence of integers, one per member; got {type(seeds).__name__}") from None
    if not out or any(isinstance(s, bool) or not isinstance(s, int) for s in out):
        raise ValueError(f"seeds must be a non-empty sequence of integers, one per member; got {out[:8]!r}")
    if members is not None and len(out) != members:
        raise ValueError(f"got {len(out)} seed(s) for {members} member(s); give one seed per member")
    return out


def train(template: nn.Module, data: MemberData, *, seeds: Sequence[int], masks: Any = None,
          init: Callable[[], nn.Module] | None = None, hold_memory: bool = True, device: Any = None,
          precision: str | None = None, **recipe: Any) -> Ensemble:
    """Train ``len(seeds)`` models of ``template``'s architecture together; ``template`` is left untouched.

    Member k is re-initialised under ``seeds[k]`` itself, as ``expunge.model(..., seed=seeds[k])`` initialises a
    model (every module's ``reset_parameters``; or ``init()`` called under the seed, for architectures those do not
    cover): these are originals, and an oracle built for one by ``retrain`` draws its initialisation from its own
    stream (:mod:`expunge.seeds`). Member k is then trained with ``seeds[k]`` on its
    data: all of ``data``, the examples ``masks[k]`` marks (e.g. :func:`half_masks` for shadow models), or
    ``data[k]`` when ``data`` is a sequence of datasets. ``recipe`` keywords are those of ``expunge.train``, which
    member k matches: ``expunge.train(fresh, its data, seed=seeds[k], **recipe)`` with ``fresh`` the same
    initialisation (``expunge.model(name, data, seed=seeds[k])`` for the built-in architectures).
    Each member's record carries the recipe, its seed and the ensemble's wall time divided by K.
    ``hold_memory``: see :func:`fit_members`. ``device`` and ``precision``: as for ``expunge.train`` (default:
    ``template``'s device); the ensemble lives there.
    """
    if not isinstance(template, nn.Module):
        raise TypeError(f"template must be a torch nn.Module; got {type(template).__name__}")
    target = target_device(device, template)
    precision = check_precision(run_precision(precision), target)
    Recipe.from_dict(recipe)
    seeds = check_seeds(seeds)
    base, rows = member_rows(data, len(seeds), masks)
    r = Recipe.for_task(base.task, recipe)   # the task's defaults, as expunge.train
    if base.task == "classification":
        k = output_size(template, move(base.x[rows[0, :1]], model_device(template)))
        top = int(base.y[rows].max())
        if top >= k:
            raise ValueError(f"the data has label {top} but the model has only {k} outputs (labels 0..{k - 1})")
    start = time.perf_counter()
    starts = [fresh_initialisation(template, s, init).to(target) for s in seeds]
    with run_scope(target, precision):
        ens = _fit_rows(starts, base, rows, seeds, r, "ensemble train", hold_memory)
    seconds = (time.perf_counter() - start) / len(seeds)
    ens.records = [stamp(m, template, recipe=r.to_dict(), task=base.task, data_fingerprint=None, seed=s,
                         init_seed=s, auxiliary_seeds={}, seconds=seconds, method=None, method_args={},
                         history=["train"])
                   for m, s in zip(starts, seeds)]
    ens.set_training_data(base, rows, fingerprint_members=True)
    return ens
