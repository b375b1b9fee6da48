"""Where models and batches live, and in which precision they train.

``device=`` on ``train``, ``unlearn``, ``evaluate``, the ensembles, ``audit``, ``bench`` and the CLI takes

- ``"auto"``: CUDA if PyTorch sees a GPU, else Apple's MPS, else the CPU;
- ``"cpu"``, ``"cuda"`` (the current CUDA device), ``"cuda:N"``, ``"mps"``, or a ``torch.device``;
- ``None``: stay where the model already is (``train`` and ``unlearn``) or follow the model (``evaluate``).

A device that is not there is refused with one line naming those that are (:func:`resolve_device`); nothing
falls back to the CPU. Data stays as CPU tensors; :func:`expunge.training.fit` moves each batch to the model's
device as it is used (pinned and non-blocking on CUDA), and every tensor a method builds (masks, teachers,
per-sample gradients, Fisher diagonals, importances, saliency, random labels) follows the model's device.
Random draws that come from seeded CPU generators are drawn on the CPU and then moved, so a seed gives the same
draws on every device and CPU results are bitwise those of earlier versions.

``precision=``: ``"fp32"`` (the default) or ``"bf16"``: the forward passes and losses of training (``fit``) run
under ``torch.autocast(dtype=torch.bfloat16)`` while weights, optimiser state and gradients stay in float32.
bf16 needs a CUDA device; on the CPU and MPS it is refused (CPU autocast is slower than float32 for the small
models expunge trains there, and its results would differ from the CPU's bitwise-repeatable float32 runs).

Determinism: CPU runs with a seed are bitwise repeatable. On CUDA, :func:`run_scope` turns on
``torch.use_deterministic_algorithms(True, warn_only=True)`` for the run (and back off after) and sets
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless it is already set (it takes effect only if set before the process's
first cuBLAS call; set it in the environment to be sure). Operations without a deterministic CUDA kernel then warn
instead of failing, and their results may differ between runs (e.g. some ``index_add``/scatter backward passes);
results also differ between GPU models, driver and library versions, between CUDA and CPU, and under bf16.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
from typing import Any, Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
DEVICE_FORMS = "auto, cpu, cuda, cuda:N, mps"

_precision: contextvars.ContextVar[str] = contextvars.ContextVar("expunge_precision", default="fp32")
_device: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("expunge_device", default=None)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available() -> list[str]:
    """The devices PyTorch can use here, in the order ``auto`` prefers them (CPU last)."""
    out: list[str] = []
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out + ["cpu"]


def device_form(spec: Any) -> str:
    """``spec`` as a normalised device string (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked for its
    form only (not whether the device is here: a bench's workers may run elsewhere); ValueError naming the allowed
    forms otherwise."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", spec.strip().lower()):
        raise ValueError(f"device {spec!r} is not allowed; expected one of {DEVICE_FORMS}")
    return spec.strip().lower()


def resolve_device(spec: Any = "auto") -> torch.device:
    """The ``torch.device`` for ``spec`` (see the module docstring); ValueError with one line naming the devices
    that are available when the asked-for one is not, or the allowed forms when ``spec`` is malformed."""
    if isinstance(spec, torch.device):
        text = str(spec)
    elif isinstance(spec, str):
        text = spec.strip().lower()
    else:
        raise TypeError(f"device must be a string ({DEVICE_FORMS}) or a torch.device; got {type(spec).__name__}")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    match = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", text)
    if not match or (match.group(1) == "cpu" and match.group(2) not in (None, "0")):
        raise ValueError(f"device {spec!r} is not allowed; expected one of {DEVICE_FORMS}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise ValueError(f"device {text!r} is not available; available: {', '.join(available())}")
        return torch.device("mps")
    if not torch.cuda.is_available() or (index is not None and int(index) >= torch.cuda.device_count()):
        raise ValueError(f"device {text!r} is not available; available: {', '.join(available())}")
    return torch.device("cuda", int(index) if index is not None else torch.cuda.current_device())


def check_precision(precision: Any, device: torch.device) -> str:
    """``precision`` if allowed on ``device``; ValueError with one line otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type != "cuda":
        raise ValueError(f"precision='bf16' needs a CUDA device; the device is {device} (use precision='fp32')")
    return precision


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def move(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``: unchanged when it is already there; from the CPU to CUDA through pinned memory,
    without blocking the host."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when the current run asks for it; a no-op otherwise."""
    if _precision.get() == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose random state ``torch.random.fork_rng`` must save for a run on ``device``."""
    return [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []


@contextlib.contextmanager
def run_scope(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """The run's precision (read by ``fit``) and, on CUDA, deterministic algorithms where PyTorch has them; both
    restored on exit."""
    token = _precision.set(precision)
    deterministic = device.type == "cuda"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        _precision.reset(token)
        if deterministic:
            torch.use_deterministic_algorithms(was[0], warn_only=was[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def target_device(device: Any, model: nn.Module) -> torch.device:
    """The device a run on ``model`` uses: ``device`` resolved when given, else the one :func:`use` set, else
    ``model``'s own."""
    if device is not None:
        return resolve_device(device)
    chosen = _device.get()
    return chosen if chosen is not None else model_device(model)


def run_precision(value: str | None) -> str:
    """``value``, or (``None``) the precision :func:`use` set (``fp32`` outside it)."""
    return _precision.get() if value is None else value


def set_default(device: Any = "auto", precision: str = "fp32") -> torch.device:
    """From now on in this thread, as :func:`use` does within a block (the CLI's ``--device``, one command per
    process); on CUDA also deterministic algorithms for the rest of the process. Returns the resolved device."""
    target = resolve_device(device)
    check_precision(precision, target)
    _device.set(target)
    _precision.set(precision)
    if target.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return target


@contextlib.contextmanager
def use(device: Any = "auto", precision: str = "fp32") -> Iterator[torch.device]:
    """Within the block, ``train``, ``unlearn``, the ensembles and ``audit`` called without ``device=`` or
    ``precision=`` use these (the CLI's ``--device`` and ``--precision``); yields the resolved device."""
    target = resolve_device(device)
    check_precision(precision, target)
    token = _device.set(target)
    try:
        with run_scope(target, precision):
            yield target
    finally:
        _device.reset(token)
