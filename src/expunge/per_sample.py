"""Per-sample gradients: the gradient of each example's own loss, for many examples at once.

:func:`per_sample_grads` evaluates ``vmap(grad(loss of one example))`` over a chunk of examples with
``torch.func.functional_call``, so one call computes a whole chunk; chunks bound the memory used. Any ``nn.Module``
works: buffers (BatchNorm running statistics) and frozen parameters are passed as constants, and the model is
evaluated in eval mode (restored afterwards), so BatchNorm uses its running statistics and dropout is off.
The gradient is taken with respect to every parameter with ``requires_grad``, in ``named_parameters`` order.

The loss of one example is the task's training loss on a batch of one (``expunge.training.task_loss``:
cross-entropy for classification, mean squared error or L1 for regression) or any callable ``loss(out, y)`` of the
model's output and the target, both with a leading batch axis of length one.

:func:`per_sample_grads_loop` computes the same thing one example at a time with ordinary autograd; it is the
slow reference against which tests and ``benchmarks/per_sample_grads.py`` check the vectorised path.

:func:`fisher_vector_product` gives Gᵀ(G·v) for the N×P matrix G of per-sample gradients without forming G (a
forward-mode and a reverse-mode pass per block of examples), so memory does not grow with N·P.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator, Union

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ._memory import hold_freed_memory
from .data.datasets import infer_task
from .devices import model_device, move
from .training import LOSSES, task_loss

Loss = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

#: chunk size chosen so that one chunk of gradients holds about this many numbers (16 MiB in float32)
CHUNK_ELEMENTS = 2 ** 22


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters gradients are taken for: those with ``requires_grad``, in ``named_parameters`` order."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters with requires_grad=True")
    return params


def num_params(model: nn.Module) -> int:
    """P, the length of a flat gradient (number of trainable parameter entries)."""
    return sum(p.numel() for p in trainable(model).values())


def flatten(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stacked gradients ``name -> [N, *shape]`` as one ``[N, P]`` matrix (columns in dict order)."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def add_flat_(model: nn.Module, vector: torch.Tensor, scale: float = 1.0) -> None:
    """In place: θ ← θ + scale · vector, where ``vector`` is laid out like a flat gradient."""
    params = trainable(model)
    total = sum(p.numel() for p in params.values())
    if vector.shape != (total,):
        raise ValueError(f"vector has shape {tuple(vector.shape)}; expected ({total},), one entry per parameter")
    with torch.no_grad():
        start = 0
        for p in params.values():
            p.add_(vector[start:start + p.numel()].view_as(p).to(p.dtype), alpha=scale)
            start += p.numel()


def resolve_loss(loss: Loss, y: torch.Tensor, task: str | None = None, reduction: str = "mean") -> Callable:
    """A loss callable ``(out, y) -> scalar`` from a name in ``training.LOSSES`` or a callable (``reduction``:
    see :func:`expunge.training.task_loss`; named losses only)."""
    if callable(loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not allowed; expected one of {', '.join(LOSSES)} or a callable")
    return task_loss(loss, task or infer_task(y), reduction=reduction)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode for the block, then restore each one's own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def _check_inputs(x: torch.Tensor, y: torch.Tensor, chunk_size: int | None) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors; got {type(x).__name__} and {type(y).__name__}")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"x must hold at least one example; got shape {tuple(x.shape)}")
    if len(y) != len(x):
        raise ValueError(f"x and y differ in length: {len(x)} examples but {len(y)} targets")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r} is not allowed; expected an integer >= 1 or None")


def auto_chunk(model: nn.Module, n: int) -> int:
    """Examples per chunk so that a chunk of gradients holds about ``CHUNK_ELEMENTS`` numbers."""
    return max(1, min(n, CHUNK_ELEMENTS // max(num_params(model), 1)))


def iter_per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: Loss = "auto",
                          task: str | None = None, chunk_size: int | None = None,
                          hold_memory: bool = True) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    """Yield ``(rows, grads)`` chunk by chunk: ``grads[name]`` is ``[len(rows), *param.shape]``, the gradients
    of examples ``x[rows]``. Use it to reduce over examples (e.g. sum of squares) without holding all of them.

    ``hold_memory``: first ask glibc to keep freed memory for reuse (:func:`expunge._memory.hold_freed_memory`;
    process-wide and lasting), which saves re-faulting every chunk's temporaries."""
    _check_inputs(x, y, chunk_size)
    if hold_memory:
        hold_freed_memory()
    loss_fn = resolve_loss(loss, y, task)
    params = {n: p.detach() for n, p in trainable(model).items()}
    consts = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    consts.update({n: b for n, b in model.named_buffers()})

    def one(theta: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (theta, consts), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    batched = vmap(grad(one), in_dims=(None, 0, 0))
    step = chunk_size or auto_chunk(model, len(x))
    device = model_device(model)
    with eval_mode(model):
        for start in range(0, len(x), step):
            rows = slice(start, min(start + step, len(x)))
            yield rows, batched(params, move(x[rows], device), move(y[rows], device))


def fisher_vector_product(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor, *,
                          loss: Loss = "auto", task: str | None = None, chunk_size: int = 256) -> torch.Tensor:
    """Gᵀ(G·vector) = Σ_i g_i (g_i · vector), with g_i the gradient of example i's loss (the rows of
    :func:`per_sample_grads`), as a flat ``[P]`` vector, without forming any g_i.

    For each block of ``chunk_size`` examples, one forward-mode pass (``torch.func.jvp``) gives the directional
    derivatives g_i · vector of the per-example losses and one reverse-mode pass (``torch.func.vjp``) sums the
    gradients weighted by them. Memory: one block's activations and their tangents plus a few vectors of length
    P, whatever the number of examples; time: about three forward passes over the examples."""
    _check_inputs(x, y, chunk_size)
    params = {n: p.detach() for n, p in trainable(model).items()}
    consts = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    consts.update({n: b for n, b in model.named_buffers()})
    tangent = _unflatten(vector, params)
    if callable(loss):   # a loss of one example: vectorised over the block
        def one(theta: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return loss(functional_call(model, (theta, consts), (xi.unsqueeze(0),)), yi.unsqueeze(0))

        def block_losses(theta: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            return vmap(one, in_dims=(None, 0, 0))(theta, xs, ys)
    else:                # a named loss, per example in one batched pass (eval mode: examples do not interact)
        per_value = resolve_loss(loss, y, task, reduction="none")

        def block_losses(theta: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            values = per_value(functional_call(model, (theta, consts), (xs,)), ys)
            return values.reshape(len(xs), -1).mean(1)

    total = torch.zeros(vector.shape, dtype=vector.dtype, device=vector.device)
    device = model_device(model)
    with eval_mode(model):
        for xs, ys in zip(x.split(chunk_size), y.split(chunk_size)):
            xs, ys = move(xs, device), move(ys, device)
            losses = lambda theta, xs=xs, ys=ys: block_losses(theta, xs, ys)  # noqa: E731
            with warnings.catch_warnings():   # torch's first forward-mode pass scripts decompositions (deprecated API)
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                _, dots = jvp(losses, (params,), (tangent,))
            _, pullback = vjp(losses, params)
            (weighted,) = pullback(dots.detach())
            total += torch.cat([weighted[n].reshape(-1) for n in params]).to(total.dtype)
    return total


def _unflatten(vector: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A flat vector laid out like a flat gradient, as tensors shaped like ``params`` (in their dtype)."""
    total = sum(p.numel() for p in params.values())
    if not isinstance(vector, torch.Tensor) or vector.shape != (total,):
        raise ValueError(f"vector must be a tensor of shape ({total},), one entry per trainable parameter; got "
                         f"{tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__}")
    out, start = {}, 0
    for name, p in params.items():
        out[name] = vector[start:start + p.numel()].view(p.shape).to(p.dtype)
        start += p.numel()
    return out


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: Loss = "auto",
                     task: str | None = None, chunk_size: int | None = None, flat: bool = True,
                     hold_memory: bool = True) -> torch.Tensor | dict[str, torch.Tensor]:
    """Gradient of each example's loss with respect to the trainable parameters, vectorised with torch.func.

    Returns a ``[N, P]`` matrix (``flat=True``; columns in ``named_parameters`` order, as :func:`add_flat_`
    expects) or a dict ``name -> [N, *param.shape]``. ``loss`` is a name in ``training.LOSSES`` (``'auto'``:
    cross-entropy for integer targets, MSE for floating ones) or a callable; ``chunk_size`` examples are processed
    at once (default: about ``CHUNK_ELEMENTS`` gradient entries per chunk). ``hold_memory``: see
    :func:`iter_per_sample_grads`.

    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> per_sample_grads(net, torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])).shape
    torch.Size([5, 8])
    """
    _check_inputs(x, y, chunk_size)
    out = _allocate(trainable(model), len(x), flat)
    for rows, grads in iter_per_sample_grads(model, x, y, loss=loss, task=task, chunk_size=chunk_size,
                                             hold_memory=hold_memory):
        start = 0
        for name, g in grads.items():
            if flat:   # each block goes straight to its columns: no concatenated copy of the chunk
                width = g[0].numel()
                out[rows, start:start + width] = g.reshape(len(g), width)  # type: ignore[index]
                start += width
            else:
                out[name][rows] = g  # type: ignore[index]
    return out


def per_sample_grads_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: Loss = "auto",
                          task: str | None = None, flat: bool = True) -> torch.Tensor | dict[str, torch.Tensor]:
    """Reference implementation of :func:`per_sample_grads`: one backward pass per example (batches of one).

    Slow; it exists so that tests and the benchmark can check the vectorised path against plain autograd.
    """
    _check_inputs(x, y, None)
    loss_fn = resolve_loss(loss, y, task)
    params = trainable(model)
    out = _allocate(params, len(x), flat)
    device = model_device(model)
    with eval_mode(model):
        for i in range(len(x)):
            value = loss_fn(model(move(x[i:i + 1], device)), move(y[i:i + 1], device))
            grads = torch.autograd.grad(value, list(params.values()))
            if flat:
                torch.cat([g.reshape(-1) for g in grads], out=out[i])  # type: ignore[index]
            else:
                for name, g in zip(params, grads):
                    out[name][i] = g  # type: ignore[index]
    return out


def _allocate(params: dict[str, nn.Parameter], n: int, flat: bool) -> torch.Tensor | dict[str, torch.Tensor]:
    first = next(iter(params.values()))
    if flat:
        return _empty((n, sum(p.numel() for p in params.values())), first.dtype, first.device)
    return {name: _empty((n, *p.shape), p.dtype, p.device) for name, p in params.items()}


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor. On the CPU it comes from numpy's allocator, which on Linux asks for transparent huge
    pages for large blocks: the first touch of an N x P gradient matrix is then several times cheaper."""
    if device.type == "cpu" and dtype in _NUMPY_DTYPES:
        return torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))
    return torch.empty(shape, dtype=dtype, device=device)


def summed_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "auto",
                task: str | None = None, chunk_size: int = 512) -> torch.Tensor:
    """Σ over examples of the per-example gradients, as a flat ``[P]`` vector, by batched backward passes.

    Named losses are means over the batch, so ``len(batch) · loss(batch)`` is the sum of the per-example losses
    (the model is in eval mode, so no example affects another's output). A parameter the loss does not reach gets
    zeros, as in :func:`per_sample_grads`.
    """
    _check_inputs(x, y, chunk_size)
    if not isinstance(loss, str):
        raise TypeError("summed_grad takes a loss name; for a callable, sum the rows of per_sample_grads")
    loss_fn = resolve_loss(loss, y, task)
    params = list(trainable(model).values())
    total = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    with eval_mode(model):
        for xs, ys in zip(x.split(chunk_size), y.split(chunk_size)):
            xs, ys = move(xs, params[0].device), move(ys, params[0].device)
            grads = torch.autograd.grad(loss_fn(model(xs), ys) * len(xs), params, allow_unused=True,
                                        materialize_grads=True)   # zeros for unused parameters, as torch.func
            total += torch.cat([g.reshape(-1) for g in grads])
    return total
