"""The method interface and the registry.

A method is a class with one verb, :meth:`Method.unlearn`, which returns a new model and never modifies the
caller's. Subclasses declare, at the top of their file:

- ``name`` (registry key), ``summary``, ``paper`` and ``reference`` (repository);
- ``needs``: whether they read the retain set and labels (``Needs``), and which ``tasks`` they support;
- ``Args``: a dataclass of hyperparameters with their defaults (training-based methods extend :class:`TrainArgs`,
  which carries the training-loop settings and ``prune_dense_then_recover``);
- ``grid``: the tuning grid, a dict of argument -> candidate values;

and implement ``run(model, forget, retain, seed)``, which may modify the copy it is given. Methods that train pass
``step_hooks=self.step_hooks()`` to ``fit``, which keeps the zeros of a sparse original (:mod:`expunge.sparsity`)
at zero; ``unlearn`` multiplies them back into every result and refuses a result that is not finite.

Registration is by the :func:`register` decorator; every module in ``expunge.methods`` is imported on first use,
so a new method file registers itself.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import time
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import resolve
from ..devices import model_device, move
from ..provenance import provenance, stamp
from ..threads import scope as thread_scope
from ..sparsity import apply_masks, carried_masks
from ..training import DivergenceError, Recipe, pin_weights

_REGISTRY: dict[str, type["Method"]] = {}
PRUNE_DENSE = "prune_dense_then_recover"
PROBE_SIZE = 4   # forget and retain examples whose outputs every result must give finite values for


@dataclass(frozen=True)
class Needs:
    """What a method reads. :func:`check_request` honours it: it reads no label of a set whose labels the method
    does not read."""

    retain: bool = True          # reads the retain set
    labels: bool = True          # reads labels (of forget and/or retain data)
    forget_labels: bool = True   # reads the forget set's labels


@dataclass
class TrainArgs:
    """Training-loop settings every training-based method accepts, plus ``prune_dense_then_recover``: prune the
    dense original to this sparsity (one-shot global magnitude pruning of every linear and convolution weight,
    the head included) inside ``unlearn`` and let the method recover with the zeros kept fixed. That measures the
    method's recovery from pruning damage; the paper's "prune first, then unlearn" protocol (Jia et al., NeurIPS
    2023) is :func:`expunge.sparsify`, which builds a sparse original once and retrains it before unlearning."""

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    warmup: float = 0.0
    clip_grad_norm: float | None = None
    prune_dense_then_recover: float | None = None

    def recipe(self, **overrides: Any) -> Recipe:
        names = {f.name for f in dataclasses.fields(Recipe)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values.update(overrides)
        return Recipe(**values)


@dataclass
class NoArgs:
    """For methods without hyperparameters."""


class Method:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    forgets: ClassVar[bool] = True      # meant to move forget-set behaviour toward the oracle's
    needs_special_original: ClassVar[bool] = False   # True when the original must be a special model (SISA)
    requires_conv: ClassVar[bool] = False   # True when the method only runs on models with convolution layers
    Args: ClassVar[type] = NoArgs
    grid: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, **kwargs: Any):
        self.args = parse_args(self.Args, kwargs, where=f"method {self.name!r}")
        self.validate()

    def validate(self) -> None:
        """Check argument values beyond their types; raise ValueError naming the argument."""
        prune = getattr(self.args, PRUNE_DENSE, None)
        self.require((PRUNE_DENSE, prune is None or 0 <= prune < 1, "a sparsity in [0, 1)"))
        if isinstance(self.args, TrainArgs):
            try:        # the training-loop settings are checked where they are given, not when training starts
                self.args.recipe()
            except ValueError as e:
                raise ValueError(f"method {self.name!r}: {e}") from None

    def require(self, *checks: tuple[str, bool, str]) -> None:
        """Raise ValueError for the first failed check, each ``(argument, ok, what is allowed)``, naming the method,
        the argument and its value."""
        for arg, ok, allowed in checks:
            if not ok:
                raise ValueError(f"method {self.name!r}: {arg}={getattr(self.args, arg)!r} is not allowed; "
                                 f"expected {allowed}")

    # -- the verb ---------------------------------------------------------------------------------------------
    def unlearn(self, model: nn.Module, *, forget: Dataset, retain: Dataset | None = None,
                seed: int = 0, device: torch.device | None = None) -> nn.Module:
        """Return a new model that has forgotten ``forget``; ``model`` is left untouched. The new model, and every
        tensor the method builds, lives on ``device`` (default: ``model``'s device)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
        check_request(model, forget, retain, self)
        dense_sparsity = getattr(self.args, PRUNE_DENSE, None)
        if dense_sparsity and provenance(model).sparse:
            raise ValueError(f"method {self.name!r}: {PRUNE_DENSE}= prunes a dense original, and this one is "
                             "already sparse (it carries a mask from sparsify); leave it out")
        work = clone(model) if device is None else clone(model).to(device)
        start = time.perf_counter()
        masks = carried_masks(work) or prune_in_place(work, dense_sparsity)
        self._weight_masks, self._mask_hooks = masks, []
        try:
            self.masked(work)
            with thread_scope():            # expunge's thread count for the whole method; the caller's restored
                out = self.run(work, forget, retain, seed)
        finally:
            for handle in self._mask_hooks:
                handle.remove()
            self._mask_hooks = []
        apply_masks(out, masks)
        seconds = time.perf_counter() - start
        out.eval()
        check_result(out, forget, retain, self.name)
        stamp(out, model, method=self.name, method_args=public_args(self.args), seed=seed, seconds=seconds,
              history=provenance(model).history + [f"unlearn:{self.name}"])
        return out

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------------------------
    def weight_masks(self) -> dict[str, torch.Tensor]:
        """The keep-masks (1 kept, 0 held at zero) of the current ``unlearn``: the sparse original's carried mask,
        or the one ``prune_dense_then_recover`` made; empty for a dense original. A method that moves weights
        (e.g. transposes kernels) updates the entries in place, and ``unlearn`` multiplies them into the result."""
        return getattr(self, "_weight_masks", None) or {}

    def masked(self, model: nn.Module) -> nn.Module:
        """``model`` with the current masks applied in place (e.g. to a fresh initialisation) and its masked weights'
        gradients zeroed while the method runs (tensor hooks, removed when ``unlearn`` returns), as the reference's
        masked weights (``torch.nn.utils.prune``) have none: gradient norms, saliency and optimiser statistics see
        only the unmasked weights. Gradients taken through ``torch.func`` (per-sample gradients) bypass the hooks."""
        masks = self.weight_masks()
        if masks:
            apply_masks(model, masks)
            hooks = getattr(self, "_mask_hooks", None)
            for name, p in model.named_parameters():
                if name in masks and p.requires_grad and hooks is not None:
                    hooks.append(p.register_hook(lambda g, key=name: g * masks[key]))
        return model

    def step_hooks(self) -> list:
        """Hooks that keep masked weights at zero after every step; pass them to ``fit``."""
        masks = self.weight_masks()
        if not masks:
            return []
        zeros = {k: torch.zeros_like(m) for k, m in masks.items()}
        return [pin_weights(masks, zeros)]

    @classmethod
    def info(cls) -> "MethodInfo":
        return MethodInfo(cls.name, cls.summary, cls.paper, cls.reference, dataclasses.asdict(cls.needs),
                          cls.tasks, defaults(cls.Args), dict(cls.grid), cls.forgets)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    paper: str
    reference: str
    needs: dict[str, bool]
    tasks: tuple[str, ...]
    defaults: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    forgets: bool = True


# --- registry ------------------------------------------------------------------------------------------------

def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    pkg = importlib.import_module(__package__)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name != "base":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def get(name: str) -> type[Method]:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def registered() -> dict[str, type[Method]]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


# --- arguments -----------------------------------------------------------------------------------------------

def defaults(args_cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(args_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def public_args(args: Any) -> dict[str, Any]:
    """Arguments as plain JSON-able values (callables shown by name)."""
    out = {}
    for k, v in dataclasses.asdict(args).items():
        out[k] = v if isinstance(v, (int, float, str, bool, type(None), list, tuple, dict)) else repr(v)
    return out


def parse_args(args_cls: type, given: dict[str, Any], *, where: str) -> Any:
    """Build ``args_cls`` from ``given``, rejecting unknown names and ill-typed values with a clear message."""
    hints = typing.get_type_hints(args_cls)
    allowed = [f.name for f in dataclasses.fields(args_cls)]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown argument(s) {unknown}; allowed: {', '.join(allowed) or 'none'}")
    values = {k: _coerce(v, hints[k], f"{where}: argument {k}") for k, v in given.items()}
    return args_cls(**values)


def _coerce(value: Any, hint: Any, what: str) -> Any:
    origin, targs = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in targs:
            return None
        errors = []
        for t in targs:
            if t is type(None):
                continue
            try:
                return _coerce(value, t, what)
            except TypeError as e:
                errors.append(str(e))
        raise TypeError(errors[0] if errors else f"{what}={value!r} has the wrong type")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what}={value!r} must be a number")
        if not math.isfinite(value):
            raise ValueError(f"{what}={value!r} must be finite")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise TypeError(f"{what}={value!r} must be an integer")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{what}={value!r} must be true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{what}={value!r} must be a string")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{what}={value!r} must be a list")
        inner = targs[0] if targs else Any
        items = [_coerce(v, inner, what) if inner is not Any and inner is not Ellipsis else v for v in value]
        return tuple(items) if origin is tuple else items
    return value


# --- shared checks and model utilities ------------------------------------------------------------------------

def clone(model: nn.Module) -> nn.Module:
    """A deep copy sharing nothing with ``model``."""
    import copy

    return copy.deepcopy(model)


def output_size(model: nn.Module, x: torch.Tensor) -> int:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x[:1])
    model.train(was_training)
    return int(out.shape[-1]) if out.ndim > 1 else 1


def check_request(model: nn.Module, forget: Dataset, retain: Dataset | None, method: Method) -> None:
    """Validate a forget/retain pair against the model and the method's needs before any work is done."""
    if forget is None or len(forget) == 0:  # type: ignore[arg-type]
        raise ValueError("the forget set is empty; nothing would be forgotten")
    fbase, fidx = resolve(forget)
    task = fbase.task
    from ._common import check_streaming

    check_streaming(method.name, forget, retain)
    if task not in method.tasks:
        fitting = sorted(n for n, cls in registered().items() if task in cls.tasks)
        raise ValueError(f"method {method.name!r} supports {', '.join(method.tasks)} tasks; the data is {task} "
                         f"(methods for {task}: {', '.join(fitting)})")
    if retain is not None:
        if len(retain) == 0 and method.needs.retain:  # type: ignore[arg-type]
            raise ValueError(f"method {method.name!r} needs a non-empty retain set; the forget set covers all data")
        rbase, ridx = resolve(retain)
        if rbase.task != task:
            raise ValueError(f"forget and retain data disagree on the task: {task} vs {rbase.task}")
        if rbase is fbase and len(ridx) and bool(torch.isin(fidx, ridx).any()):
            n = int(torch.isin(fidx, ridx).sum())
            raise ValueError(f"forget and retain sets overlap in {n} example(s); they must be disjoint")
    elif method.needs.retain:
        raise ValueError(f"method {method.name!r} needs retain data; pass retain=...")
    if task == "classification" and method.needs.labels:
        k = output_size(model, move(fbase.x[fidx[:1]], model_device(model)))
        checked = (("forget", forget),) if method.needs.forget_labels else ()
        for name, data in checked + (("retain", retain),):   # a set whose labels the method never reads is not read
            if data is None or len(data) == 0:  # type: ignore[arg-type]
                continue
            base, idx = resolve(data)
            top = int(base.y[idx].max())
            if top >= k:
                raise ValueError(f"{name} set has label {top} but the model has only {k} outputs (labels 0..{k - 1})")


def check_result(model: nn.Module, forget: Dataset, retain: Dataset | None, method: str) -> None:
    """Raise DivergenceError unless every parameter and floating-point buffer of ``model`` is finite and so are its
    outputs on the first few forget and retain examples (a model can have finite weights and still overflow)."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise DivergenceError(f"method {method!r} returned a model whose {kind} {name} has {bad} non-finite "
                                      "value(s); lower its learning rate or the size of its change (e.g. alpha)")
    device = model_device(model)
    for what, data in (("forget", forget), ("retain", retain)):
        if data is None or len(data) == 0:  # type: ignore[arg-type]
            continue
        base, idx = resolve(data)
        x = move(base.x[idx[:PROBE_SIZE]], device)
        x = x[torch.isfinite(x.reshape(len(x), -1)).all(1)]   # judge the model, not non-finite inputs
        if len(x) == 0:
            continue
        with torch.no_grad():
            out = model(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not all(bool(torch.isfinite(o).all()) for o in outs if torch.is_tensor(o)):
            raise DivergenceError(f"method {method!r} returned a model whose outputs on the first {len(x)} {what} "
                                  "example(s) are non-finite (its weights are finite but too large); lower its "
                                  "learning rate or the size of its change (e.g. alpha)")


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of linear and convolutional layers (biases and norms are not pruned)."""
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[f"{mname}.weight" if mname else "weight"] = m.weight
    return out


def prune_in_place(model: nn.Module, sparsity: float | None) -> dict[str, torch.Tensor]:
    """One-shot global magnitude pruning (OMP): zero the ``sparsity`` fraction of smallest-magnitude prunable
    weights; return the keep-masks (empty when ``sparsity`` is None or 0)."""
    if not sparsity:
        return {}
    weights = prunable(model)
    scores = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    k = int(round(sparsity * scores.numel()))
    if k == 0:
        return {}
    threshold = torch.kthvalue(scores, k).values
    masks = {}
    with torch.no_grad():
        for pname, w in weights.items():
            masks[pname] = (w.abs() > threshold).to(w.dtype)
            w.mul_(masks[pname])
    return masks
