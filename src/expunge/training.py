"""The one training loop. ``train``, ``retrain`` and every training-based method run through :func:`fit`.

A run is described by

- a :class:`Recipe` (optimiser, learning rate and schedule, epochs, batch size, clipping, loss);
- a *plan*: a function ``plan(epoch, generator) -> list[Batch]`` that lays out one epoch's batches. Each
  :class:`Batch` holds named parts (``"data"``, ``"retain"``, ``"forget"``, ...) and a ``tag``; tensors are sliced
  only when a loss reads them, so label-free losses never touch targets. :func:`batches`, :func:`zipped` and
  :func:`chain` build the common plans. Over streamed data (``expunge.data.StreamedDataset``) the same plans
  read rows instead of slicing tensors, and :func:`fetched` has DataLoader workers read them ahead;
- a loss ``loss_fn(model, batch, ctx) -> scalar`` (default: cross-entropy or MSE on the ``"data"`` part);
- hooks: ``grad_hooks`` run between ``backward`` and the optimiser step (gradient masks, scaling);
  ``step_hooks`` run after it (weight masks that pin frozen weights, projections).

Runs are seeded and bitwise repeatable on CPU. Models may live on any device (:mod:`expunge.devices`): the data
stays in CPU memory and each batch's tensors move to the model's device when the loss reads them
(:func:`on_device`); under ``precision='bf16'`` the loss runs under bf16 autocast on CUDA. A non-finite loss stops
the run with :class:`DivergenceError` naming the run, epoch and step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .data.datasets import resolve
from .devices import autocast, model_device, move, rng_devices
from .progress import Phase
from .threads import scope as thread_scope

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "linear")
LOSSES = ("auto", "cross_entropy", "mse", "l1")
MAX_EPOCHS = 10_000   # an upper bound on any epoch count, so a typo cannot start a run of years


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weights; the run was stopped and nothing was returned."""


class StopTraining(Exception):
    """Raised by a loss or hook to end a run early (e.g. once a target is reached); :func:`fit` then returns the
    model as it stands, with every completed optimiser step applied."""


@dataclass(frozen=True)
class Recipe:
    """How to train. ``schedule``: constant, step (x ``gamma`` every ``step_size`` epochs), cosine or linear decay
    to zero; ``warmup`` is a fraction of all steps with a linear ramp. ``loss='auto'`` picks cross-entropy for
    classification and MSE for regression.

    The field defaults (30 epochs of SGD at lr 0.05, momentum 0.9, weight decay 5e-4, cosine decay, batches of 64,
    no clipping) are for classification. ``expunge.train`` builds its recipe with :meth:`for_task`, which fills
    the settings a caller leaves out with the task's defaults (``TASK_DEFAULTS``): regression also clips the
    gradient norm at 5. A squared error on targets in the tens gives gradients hundreds of times larger than a
    cross-entropy, and unclipped SGD at lr 0.05 then diverges or kills every ReLU in the first epoch; clipped,
    the same recipe fits targets from ~N(0, 1) to ~N(500, 200). Settings a caller gives are used as given, and a
    ``Recipe`` built directly keeps the field defaults."""

    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    warmup: float = 0.0
    clip_grad_norm: float | None = None
    loss: str = "auto"

    def __post_init__(self) -> None:
        _check(isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and 0 <= self.epochs <= MAX_EPOCHS,
               "epochs", self.epochs, f"an integer in 0..{MAX_EPOCHS}")
        _check(self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "a positive number")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size,
               "an integer >= 1")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, " / ".join(OPTIMIZERS))
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, " / ".join(SCHEDULES))
        _check(self.loss in LOSSES, "loss", self.loss, " / ".join(LOSSES))
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(0 <= self.warmup < 1, "warmup", self.warmup, "a fraction in [0, 1)")
        _check(self.step_size >= 1, "step_size", self.step_size, "an integer >= 1")
        _check(self.clip_grad_norm is None or self.clip_grad_norm > 0, "clip_grad_norm", self.clip_grad_norm,
               "a positive number or None")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_task(cls, task: str, settings: dict[str, Any]) -> "Recipe":
        """The recipe for ``task``: ``settings`` as given, every other field at the task's default
        (``TASK_DEFAULTS[task]``, else the field default)."""
        if task not in TASK_DEFAULTS:
            raise ValueError(f"task={task!r} is not allowed; expected one of {', '.join(TASK_DEFAULTS)}")
        return cls.from_dict({**TASK_DEFAULTS[task], **settings})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; allowed: {', '.join(sorted(names))}")
        return cls(**d)

    def lr_factor(self, progress: float) -> float:
        """Learning-rate multiplier at ``progress`` in [0, 1) of the run."""
        if self.warmup and progress < self.warmup:
            return (progress + 1e-12) / self.warmup
        p = (progress - self.warmup) / (1 - self.warmup) if self.warmup else progress
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * p))
        if self.schedule == "linear":
            return 1 - p
        if self.schedule == "step":
            return self.gamma ** int(p * self.epochs // self.step_size)
        return 1.0


#: per-task defaults that differ from ``Recipe``'s field defaults (see :meth:`Recipe.for_task`)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {},
    "regression": {"clip_grad_norm": 5.0},
    # causal language models trained from scratch (the transformer recipe: AdamW, warmup, cosine decay, clipping);
    # on the authors corpus (200 x 5 facts, ~1M parameters) 20 epochs recall every trained answer
    # (benchmarks/authors_recipe.py)
    "language": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "batch_size": 32, "epochs": 20,
                 "warmup": 0.05, "clip_grad_norm": 1.0},
    # class-conditional image generators (expunge.gen): Adam-type optimisers with clipping; each model adds its
    # own settings (GenerativeModel.recipe_defaults, merged over these by expunge.train)
    "generation": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "epochs": 40,
                   "warmup": 0.05, "clip_grad_norm": 1.0},
}


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"training setting {name}={value!r} is not allowed; expected {allowed}")


# --- batches and plans ---------------------------------------------------------------------------------------

class Part:
    """A slice of a dataset: ``x`` and ``y`` are read on first access."""

    __slots__ = ("_base", "_idx", "positions", "device", "_x")

    def __init__(self, base, idx: torch.Tensor, positions: torch.Tensor):
        self._base, self._idx, self.positions = base, idx, positions
        self._x: torch.Tensor | None = None         # features fetched ahead by workers (streamed data, see fetched)
        self.device: torch.device | None = None     # set by fit (on_device): where x and y are delivered

    @property
    def x(self) -> torch.Tensor:
        x = self._x if self._x is not None else self._base.x[self._idx]
        return x if self.device is None else move(x, self.device)

    @property
    def y(self) -> torch.Tensor:
        y = self._base.y[self._idx]
        return y if self.device is None else move(y, self.device)

    def __len__(self) -> int:
        return len(self._idx)


@dataclass
class Batch:
    """Named parts of one optimisation step; ``positions`` of a part index its source dataset."""

    parts: dict[str, Part]
    tag: str = ""

    def __getitem__(self, name: str) -> Part:
        return self.parts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.parts


def on_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with its parts delivering ``x`` and ``y`` on ``device`` (sliced on the CPU, then moved; pinned and
    non-blocking on CUDA); ``positions`` stay CPU indices into the source dataset."""
    for part in batch.parts.values():
        part.device = None if device.type == "cpu" else device
    return batch


Plan = Callable[[int, torch.Generator], Sequence[Batch]]


class Source:
    """A dataset resolved once to tensors, sliced into batches by position."""

    def __init__(self, dataset: Dataset):
        self.base, self.idx = resolve(dataset)

    def __len__(self) -> int:
        return len(self.idx)

    def part(self, positions: torch.Tensor) -> Part:
        return Part(self.base, self.idx[positions], positions)

    def order(self, generator: torch.Generator, shuffle: bool = True) -> torch.Tensor:
        n = len(self)
        return torch.randperm(n, generator=generator, device="cpu") if shuffle else torch.arange(n, device="cpu")


def fetched(epoch_batches: Sequence[Batch]) -> Iterable[Batch]:
    """One epoch's batches, in order, ready to train on: where each batch's data comes from.

    In-memory parts are sliced from tensors when the loss reads them; with no streamed part the list is returned
    as it is (the fast path, unchanged). Parts over streamed data (``expunge.data.StreamedDataset``) whose data
    asks for ``num_workers`` > 0 have their features read ahead by a DataLoader with that many worker processes
    (batch index -> the rows of each streamed part -> one tensor per part) while earlier batches train; with 0
    workers they are read in this process when the loss reads them. Labels are never read ahead, so a label-free
    loss still never reads one, and the values are the same either way, so results do not depend on the workers.
    """
    import multiprocessing

    streamed = [p._base for b in epoch_batches for p in b.parts.values() if not getattr(p._base, "in_memory", True)]
    workers = max((int(getattr(base, "num_workers", 0)) for base in streamed), default=0)
    if not streamed or workers == 0 or "fork" not in multiprocessing.get_all_start_methods():
        return epoch_batches            # workers inherit the data by fork; without it, rows are read in this process
    from torch.utils.data import DataLoader

    # a generator of its own: the loader's worker seed must not be drawn from the run's global RNG stream
    loader = DataLoader(_StreamedFeatures(epoch_batches), batch_size=None, shuffle=False, num_workers=workers,
                        generator=torch.Generator().manual_seed(0), multiprocessing_context="fork")

    def deliver() -> Iterable[Batch]:
        for batch, xs in zip(epoch_batches, loader):
            for pname, x in xs.items():
                batch.parts[pname]._x = x
            yield batch
            for pname in xs:                    # the step is done: let its rows go
                batch.parts[pname]._x = None
    return deliver()


class _StreamedFeatures(Dataset):
    """Item ``i``: the features of the streamed parts of batch ``i``, as ``{part name: tensor}``."""

    def __init__(self, epoch_batches: Sequence[Batch]):
        self.batches = epoch_batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: p._base.x[p._idx] for name, p in self.batches[i].parts.items()
                if not getattr(p._base, "in_memory", True)}


def batches(dataset: Dataset, batch_size: int, *, name: str = "data", shuffle: bool = True,
            tag: str = "", drop_last: bool = False) -> Plan:
    """One pass over ``dataset`` per epoch in (shuffled) batches, each with one part called ``name``."""
    src = Source(dataset)

    def plan(epoch: int, g: torch.Generator) -> list[Batch]:
        order = src.order(g, shuffle)
        chunks = list(order.split(batch_size))
        if drop_last and len(chunks) > 1 and len(chunks[-1]) < batch_size:
            chunks.pop()
        return [Batch({name: src.part(c)}, tag) for c in chunks]
    return plan


def zipped(main: tuple[str, Dataset, int], other: tuple[str, Dataset, int], *, tag: str = "") -> Plan:
    """Pair every batch of ``main`` with a batch of ``other``; ``other`` is cycled (reshuffled on each pass) so the
    epoch has as many steps as ``main`` has batches. Each argument is ``(part name, dataset, batch size)``."""
    (mname, mdata, mbs), (oname, odata, obs) = main, other
    msrc, osrc = Source(mdata), Source(odata)
    if len(osrc) == 0 and len(msrc) > 0:
        raise ValueError(f"zipped: the {oname!r} data is empty, so its batches cannot be paired with the {mname!r} "
                         "batches; give it at least one example")

    def plan(epoch: int, g: torch.Generator) -> list[Batch]:
        mchunks = list(msrc.order(g).split(mbs))
        ochunks: list[torch.Tensor] = []
        while len(ochunks) < len(mchunks):
            ochunks += list(osrc.order(g).split(obs))
        return [Batch({mname: msrc.part(m), oname: osrc.part(o)}, tag) for m, o in zip(mchunks, ochunks)]
    return plan


def chain(*plans: Plan) -> Plan:
    """The epochs of several plans one after another (e.g. a pass over the forget set, then one over retain)."""
    def plan(epoch: int, g: torch.Generator) -> list[Batch]:
        return [b for p in plans for b in p(epoch, g)]
    return plan


# --- losses ----------------------------------------------------------------------------------------------------

def task_loss(kind: str, task: str, *, reduction: str = "mean") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss for ``kind`` in LOSSES on a classification or regression task: its mean over the batch, or with
    ``reduction='none'`` its values per example (per example and output for multi-output regression). On the
    language task: the next-token cross-entropy, its mean over every labelled token of the batch, or per sequence
    the mean over its labelled tokens."""
    if kind not in LOSSES:
        raise ValueError(f"loss={kind!r} is not allowed; expected one of {', '.join(LOSSES)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction={reduction!r} is not allowed; expected 'mean' or 'none'")
    if task == "generation":
        raise ValueError("generative models train on their own objective (GenerativeModel.training_loss); "
                         "task_loss does not apply to the generation task")
    if task == "language":     # next-token cross-entropy over the labelled tokens (expunge.lm.losses)
        if kind not in ("auto", "cross_entropy"):
            raise ValueError(f"loss {kind!r} does not apply to language models; use 'auto' or 'cross_entropy'")
        from .lm.losses import lm_loss, sequence_loss

        return lm_loss if reduction == "mean" else sequence_loss
    if kind == "auto":
        kind = "cross_entropy" if task == "classification" else "mse"
    if kind == "cross_entropy":
        if task != "classification":
            raise ValueError("loss 'cross_entropy' needs a classification task; use 'mse' or 'l1' for regression")
        return F.cross_entropy if reduction == "mean" else lambda out, y: F.cross_entropy(out, y, reduction="none")
    fn = F.mse_loss if kind == "mse" else F.l1_loss
    return lambda out, y: fn(regression_output(out, y), y, reduction=reduction)


def regression_output(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Model outputs shaped like regression targets (a single output column is squeezed for 1-D targets)."""
    return out.squeeze(-1) if y.ndim == 1 and out.ndim == 2 and out.shape[1] == 1 else out


def supervised(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], part: str = "data"):
    """A loss_fn computing ``loss(model(x), y)`` on one part of the batch."""
    def loss_fn(model: nn.Module, batch: Batch, ctx: "StepContext") -> torch.Tensor:
        p = batch[part]
        return loss(model(p.x), p.y)
    return loss_fn


def generative_loss(part: str = "data"):
    """A loss_fn computing a generative model's own objective, ``model.training_loss(x, y)``, on one part of the
    batch (``expunge.gen``: the denoising loss of a diffusion model, the adversarial losses of a GAN)."""
    def loss_fn(model: nn.Module, batch: Batch, ctx: "StepContext") -> torch.Tensor:
        p = batch[part]
        return model.training_loss(p.x, p.y)
    return loss_fn


# --- the loop --------------------------------------------------------------------------------------------------

@dataclass
class StepContext:
    name: str
    epoch: int
    epochs: int
    step: int              # global step, from 0
    steps_in_epoch: int
    progress: float        # fraction of the run done, in [0, 1)
    state: dict[str, Any] = field(default_factory=dict)   # free space for a method's loss between steps


def make_optimizer(params: Iterable[nn.Parameter], recipe: Recipe, *, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimiser; ``fused`` selects PyTorch's fused kernels (one pass over each parameter, equal to
    the default up to floating-point rounding; worth it for a few large parameters such as stacked ensembles)."""
    params = list(params)
    extra = {"fused": True} if fused else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                               **extra)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)


def fit(model: nn.Module, plan: Plan, *, recipe: Recipe, loss_fn=None, task: str = "classification",
        seed: int = 0, name: str = "train", params: Iterable[nn.Parameter] | None = None,
        grad_hooks: Sequence[Callable[[nn.Module], None]] = (),
        step_hooks: Sequence[Callable[[nn.Module], None]] = (),
        epoch_hooks: Sequence[Callable[[nn.Module, int], None]] = (), fused: bool = False,
        tag_lr: dict[str, float] | None = None) -> nn.Module:
    """Train ``model`` in place following ``plan`` and ``recipe``; return it in eval mode.

    ``params`` restricts the optimiser to some parameters (default: all with ``requires_grad``). Batch order and
    any randomness inside the loss come from ``seed``; the global RNG is left as it was. ``fused``: see
    :func:`make_optimizer`. ``tag_lr`` gives batches with these tags an optimiser of their own (its own momentum
    or Adam state) at ``recipe.lr`` times the given factor, for methods that alternate two kinds of steps with two
    optimisers; batches with other tags share the default one.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"{name}: recipe must be an expunge.training.Recipe; got {type(recipe).__name__}")
    if loss_fn is None and task == "language":
        from .lm.losses import language_loss_fn

        task_loss(recipe.loss, task)          # refuses losses that do not apply to language models
        loss_fn = language_loss_fn()
    if loss_fn is None and task == "generation":
        if recipe.loss != "auto":
            raise ValueError(f"loss {recipe.loss!r} does not apply to generative models; they train on their own "
                             "objective (use 'auto')")
        loss_fn = generative_loss()
    loss_fn = loss_fn or supervised(task_loss(recipe.loss, task))
    for tag, factor in (tag_lr or {}).items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < math.inf:
            raise ValueError(f"{name}: tag_lr[{tag!r}]={factor!r} is not allowed; expected a learning-rate factor, "
                             "a finite number >= 0")
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if not params:
        raise ValueError(f"{name}: no trainable parameters")
    default = make_optimizer(params, recipe, fused=fused)
    by_tag = {tag: (make_optimizer(params, recipe, fused=fused), factor) for tag, factor in (tag_lr or {}).items()}
    gen = torch.Generator().manual_seed(int(seed))
    step = 0
    device = model_device(model)
    with torch.random.fork_rng(devices=rng_devices(device)), thread_scope():   # the caller's thread count restored
        torch.manual_seed(int(seed))
        model.train()
        bar = Phase(name, recipe.epochs, "epoch").__enter__()      # a bar on a terminal, timed lines elsewhere
        try:
            for epoch in range(recipe.epochs):
                epoch_batches = plan(epoch, gen)
                n = len(epoch_batches)
                total = 0.0
                for i, batch in enumerate(fetched(epoch_batches)):
                    batch = on_device(batch, device)
                    ctx = StepContext(name, epoch, recipe.epochs, step, n, (epoch + i / max(n, 1)) / recipe.epochs)
                    opt, factor = by_tag.get(batch.tag, (default, 1.0))
                    for group in opt.param_groups:
                        group["lr"] = recipe.lr * factor * recipe.lr_factor(ctx.progress)
                    with autocast(device):
                        loss = loss_fn(model, batch, ctx)
                    if not torch.isfinite(loss):
                        raise DivergenceError(f"{name}: loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
                                              "lower the learning rate or the number of epochs")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for hook in grad_hooks:
                        hook(model)
                    if recipe.clip_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
                    opt.step()
                    for hook in step_hooks:
                        hook(model)
                    total += loss.item()
                    step += 1
                    bar.update(epoch + (i + 1) / n)
                for hook in epoch_hooks:
                    hook(model, epoch)
                bar.update(epoch + 1, loss=total / max(n, 1))
                log.debug("%s epoch %d/%d loss %.4f", name, epoch + 1, recipe.epochs, total / max(n, 1))
        except StopTraining as stop:
            log.debug("%s stopped early after %d step(s): %s", name, step, stop)
        finally:
            bar.close()
    model.eval()
    check_finite_weights(model, name)
    return model


def check_finite_weights(model: nn.Module, name: str) -> None:
    for pname, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergenceError(f"{name}: parameter {pname} became non-finite; the run was stopped")


# --- masks and pins, shared by sparsity- and saliency-based methods ------------------------------------------

def mask_gradients(masks: dict[str, torch.Tensor]) -> Callable[[nn.Module], None]:
    """A grad hook multiplying each named parameter's gradient by its mask (0/1 or a scale)."""
    def hook(model: nn.Module) -> None:
        for pname, p in model.named_parameters():
            m = masks.get(pname)
            if m is not None and p.grad is not None:
                p.grad.mul_(m)
    return hook


def pin_weights(masks: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> Callable[[nn.Module], None]:
    """A step hook restoring ``anchor`` wherever ``mask`` is False, so weight decay and momentum cannot move
    weights that are meant to stay fixed."""
    def hook(model: nn.Module) -> None:
        with torch.no_grad():
            for pname, p in model.named_parameters():
                m = masks.get(pname)
                if m is not None:
                    p.copy_(torch.where(m.bool(), p, anchor[pname]))
    return hook
