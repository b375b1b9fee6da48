"""The front door: ``train``, ``unlearn``, ``methods`` and ``model`` (building a named architecture)."""
from __future__ import annotations

import time
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .data.datasets import features, fingerprint, first_rows, resolve
from .devices import check_precision, model_device, move, run_precision, run_scope, target_device
from .methods import base as registry
from .methods.base import MethodInfo, check_request, clone, output_size
from .provenance import stamp
from .training import Recipe, batches, fit

MAX_OUTPUTS = 100_000            # classes (or regression outputs) a built-in model may have
MAX_PARAMETERS = 500_000_000     # parameters a built-in model may have


MODEL_ARGS = {"mlp": "hidden (a list of layer widths, integers >= 1), dropout (a number in [0, 1))",
              "cnn": "width (an integer >= 1)", "resnet18": "width (an integer >= 1)"}


def _check_model_args(name: str, kwargs: dict[str, Any]) -> None:
    """The built-in models' arguments, checked by type and range; ValueError listing what is allowed."""
    if name not in MODEL_ARGS:
        return                                    # build_model names the allowed models
    count = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1
    valid = {"hidden": lambda v: isinstance(v, (list, tuple)) and all(count(h) for h in v),
             "dropout": lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v < 1,
             "width": count}
    allowed = {"mlp": ("hidden", "dropout"), "cnn": ("width",), "resnet18": ("width",)}[name]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} has no argument {unknown[0]!r}; allowed: {MODEL_ARGS[name]}")
    bad = next((k for k in allowed if k in kwargs and not valid[k](kwargs[k])), None)
    if bad is not None:
        raise ValueError(f"model {name!r}: {bad}={kwargs[bad]!r} is not allowed; expected {MODEL_ARGS[name]}")


def model(name: str, data: Dataset, *, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build a built-in architecture (mlp, cnn, resnet18) sized for ``data``, initialised under ``seed``; the name
    and arguments are recorded so ``load_model`` can rebuild it without ``into=``."""
    import torch

    from .models import build_model

    base, idx = resolve(data)
    sample_shape = tuple(base.x.shape[1:])
    num_outputs = kwargs.pop("num_outputs", None)
    _check_model_args(name, kwargs)
    if num_outputs is None:
        num_outputs = (base.num_classes if base.task == "classification"
                       else (1 if base.y.ndim == 1 else int(base.y.shape[1])))
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be an integer >= 1; got {num_outputs!r}")
    if num_outputs > MAX_OUTPUTS:
        what = (f"the data's largest class label is {num_outputs - 1}" if base.task == "classification"
                else f"{num_outputs} outputs were asked for")
        raise ValueError(f"{what}, which needs a {num_outputs:,}-output head; at most {MAX_OUTPUTS:,} outputs are "
                         "allowed (class labels must be 0..K-1; relabel them, or pass task='regression')")
    with torch.device("meta"):          # count the parameters before allocating any
        size = sum(p.numel() for p in build_model(name, sample_shape=sample_shape, num_outputs=num_outputs,
                                                  **kwargs).parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(f"model {name!r} with {kwargs or 'default arguments'} for examples of shape "
                         f"{sample_shape} would have {size:,} parameters; at most {MAX_PARAMETERS:,} are allowed")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        m = build_model(name, sample_shape=sample_shape, num_outputs=num_outputs, **kwargs)
    stamp(m, architecture={"name": name, "kwargs": {"sample_shape": list(sample_shape),
                                                    "num_outputs": num_outputs, **kwargs}},
          task=base.task, num_outputs=num_outputs, init_seed=int(seed))
    return m


def check_outputs(model: nn.Module, data: Dataset) -> None:
    """Check that ``model``'s outputs fit ``data``'s targets (labels within the outputs for classification, one
    output per target for regression); ValueError saying what to change otherwise."""
    base, idx = resolve(data)
    _check_generation(model, base)
    if len(idx) == 0:
        return
    if base.task == "generation":
        top = int(base.y[idx].max())
        if top >= model.n_classes:
            raise ValueError(f"the data has class {top} but the generator is conditioned on {model.n_classes} "
                             f"classes (0..{model.n_classes - 1})")
        return
    if base.task == "language":
        vocab = getattr(model, "vocab_size", None)
        top = int(base.x[idx].max())
        if vocab is not None and top >= vocab:
            raise ValueError(f"the text data has token id {top} but the model's vocabulary has {vocab} tokens; "
                             "encode the data with the model's own tokenizer")
        return
    try:
        k = output_size(model, move(first_rows(data), model_device(model)))
    except RuntimeError as e:
        raise ValueError(f"the model cannot take the data's examples of shape {tuple(base.x.shape[1:])}: "
                         f"{str(e).splitlines()[0]}") from None
    if base.task == "classification":
        top = int(base.y[idx].max())
        if top >= k:
            raise ValueError(f"the data has label {top} but the model has only {k} outputs (labels 0..{k - 1}); a "
                             "classifier needs one output per class")
    else:
        want = 1 if base.y.ndim == 1 else int(base.y.shape[1])
        if k != want:
            raise ValueError(f"the data is regression with {want} target(s) per example but the model has {k} "
                             f"outputs; build it with num_outputs={want} (expunge.model does this from the data), "
                             "or give class labels as integers for classification")


def _check_generation(model: nn.Module, base: Any) -> None:
    """A generative model takes generation data and nothing else takes it; images must fit the model."""
    from .gen.base import is_generative

    if is_generative(model) and base.task != "generation":
        raise ValueError(f"a generative model ({type(model).__name__}) needs labelled images of task 'generation'; "
                         f"the data is {base.task} (prepare images with expunge.data.for_generation(data))")
    if base.task == "generation" and not is_generative(model):
        raise ValueError(f"generation data needs an expunge generative model (expunge.gen.unet(), expunge.gen.gan(), "
                         f"DiffusionModel.from_unet(...)); got {type(model).__name__}")
    if base.task == "generation" and tuple(base.x.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"the images are {tuple(base.x.shape[1:])} but the model generates {tuple(model.image_shape)}"
                         " (C, H, W); resize with expunge.data.for_generation(data, size=...) or build the model "
                         "for this size")


def train(model: nn.Module, data: Dataset, *, seed: int = 0, device: Any = None, precision: str | None = None,
          **recipe: Any) -> nn.Module:
    """Train a copy of ``model`` on ``data`` and return it; ``model`` is left untouched.

    ``recipe`` keywords are the fields of :class:`expunge.training.Recipe` (epochs, lr, batch_size, optimizer,
    momentum, weight_decay, schedule, warmup, clip_grad_norm, loss). Those left out take the task's defaults
    (:meth:`~expunge.training.Recipe.for_task`): 30 epochs of SGD at lr 0.05 with momentum 0.9, weight decay 5e-4,
    cosine decay and batches of 64; for regression the gradient norm is also clipped at 5, so targets in the tens
    or hundreds train without diverging; language models (text data, :mod:`expunge.lm`) take AdamW with warmup
    and clipping (``training.TASK_DEFAULTS["language"]``), and a transformers model is returned wrapped as an
    ``expunge.lm.CausalLM`` with the data's tokenizer; image generators (:mod:`expunge.gen`, data from
    :func:`expunge.data.for_generation`) train on their own objective with their ``recipe_defaults`` over
    ``TASK_DEFAULTS["generation"]``. The recipe actually used is recorded on the returned model so that
    ``unlearn(..., method="retrain")`` trains the oracle the same way.

    ``device``: where to train (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default: the one
    ``expunge.devices.use`` set, else where ``model`` is); the returned model lives there. ``precision``: ``fp32``
    (default) or ``bf16`` (autocast, CUDA only); see :mod:`expunge.devices`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    model = _language_model(model, data)
    target = target_device(device, model)
    precision = check_precision(run_precision(precision), target)
    Recipe.from_dict(recipe)   # bad settings are refused before the data is read
    base, idx = resolve(data)
    r = Recipe.for_task(base.task, {**getattr(model, "recipe_defaults", {}), **recipe})
    if len(idx) == 0:
        raise ValueError("the training data is empty")
    check_outputs(model, data)
    work = clone(model).to(target)
    start = time.perf_counter()
    with run_scope(target, precision):
        fit(work, batches(data, r.batch_size), recipe=r, task=base.task, seed=seed, name="train")
    stamp(work, model, recipe=r.to_dict(), task=base.task, data_fingerprint=fingerprint(data), seed=seed,
          seconds=time.perf_counter() - start, method=None, method_args={}, history=["train"])
    return work


def unlearn(model: nn.Module, *, forget: Dataset, retain: Dataset | None = None, method: str = "finetune",
            seed: int = 0, device: Any = None, precision: str | None = None, **args: Any) -> nn.Module:
    """Return a copy of ``model`` that has forgotten ``forget``, using ``method`` with ``args``.

    ``method="retrain"`` gives the oracle. Unknown methods or arguments raise ValueError listing what is allowed.
    ``device``: where the method runs and the returned model lives (default: as for ``train``); ``precision``:
    ``fp32`` or ``bf16`` for the training steps of training-based methods (CUDA only); see :mod:`expunge.devices`.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name; got {type(method).__name__}")
    if isinstance(model, nn.Module):
        model = _language_model(model, forget)
        target = target_device(device, model)
        precision = check_precision(run_precision(precision), target)
    chosen = registry.get(method)(**args)
    needs = chosen.needs          # read only the labels the method itself reads
    checked = forget if needs.labels and needs.forget_labels else retain if needs.labels else None
    if isinstance(model, nn.Module) and checked is not None and len(checked):  # type: ignore[arg-type]
        check_outputs(model, checked)
    if not isinstance(model, nn.Module):
        return chosen.unlearn(model, forget=forget, retain=retain, seed=seed)   # refuses it with a TypeError
    with run_scope(target, precision):
        return chosen.unlearn(model, forget=forget, retain=retain, seed=seed, device=target)


def _language_model(model: nn.Module, data: Dataset) -> nn.Module:
    """A transformers or peft causal LM wrapped as an ``expunge.lm.CausalLM`` with ``data``'s tokenizer; any other
    model as given (transformers is imported only when the model comes from it)."""
    from .lm.models import is_language_model

    if not is_language_model(model):
        return model
    from .lm.models import as_language_model

    return as_language_model(model, data)


def methods() -> dict[str, MethodInfo]:
    """Every registered method: summary, paper, reference repository, needs, tasks, defaults and tuning grid."""
    return {name: cls.info() for name, cls in registry.registered().items()}


__all__ = ["model", "train", "unlearn", "methods", "check_request"]
