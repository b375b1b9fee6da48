"""Fisher forgetting: Gaussian noise in the weights, largest where the retain set's Fisher information is smallest.

Paper: Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
CVPR 2020. Reference: https://github.com/AdityaGolatkar/SelectiveForgetting (``Forgetting.ipynb``: ``hessian``
and ``get_mean_var``); OPTML-Group/Unlearn-Sparse ``unlearn/fisher.py`` (``fisher_new``, a port of the notebook,
and ``fisher``, a simpler variant).

Weights that matter little to R (small Fisher information) can carry information about F; noise there destroys
that information while barely changing the loss on R. Each trainable parameter is replaced by a draw from
N(mean, variance), built as in the authors' ``get_mean_var``:

1. F_i = (1/n_R) Σ_{x ∈ R} Σ_c p(c|x) (∂ log p(c|x) / ∂θ_i)², the diagonal of the true Fisher of R at θ0 (the
   expectation over the model's own prediction, eval mode; the authors' ``hessian``), from vectorised
   per-sample gradients (:mod:`expunge.per_sample`; one pass per class). ``fisher='empirical'`` uses the true
   label only (OPTML's ``fisher``).
2. v_i = α · min(1 / (F_i + 1e-8), ``max_variance``), and for the head at most α · ``head_max_variance``.
3. For a parameter with two or more dimensions, v is replaced by its mean over dimension 1: in a weight matrix
   every input weight of an output unit gets the same variance (in a convolution kernel, the mean is over input
   channels, per output channel and kernel position, as in the authors' code).
4. Class-wise forgetting: the head's rows of the forgotten classes (weight row and bias entry) get mean 0 and
   variance 1e-4 (1e-3 after step 5), whatever α: the forgotten classes' output weights are removed. Everywhere
   else the mean is θ0.
5. The head's variance and that of every 1-D parameter (biases, normalisation scales) is multiplied by 10.
6. θ ← mean + √variance · ε, ε ~ N(0, 1) drawn under the seed, parameter by parameter in ``named_parameters``
   order. Away from the capped entries and removed rows, the noise standard deviation is proportional to √α.

The head is ``model.head`` when the model has one (every built-in model), else its last ``nn.Linear``
(:func:`expunge.methods._common.final_linear`; it must produce the model's outputs, and a model without an
``nn.Linear`` is refused). The forgotten classes are ``forget_classes`` when given ([] turns the removal off), else
those of a class-wise request (``split_forget(data, classes=[...])``); for any other request no row is removed.

Behaviour: the paper's experiments remove a class or a sub-class, and that is where the method works. Forgetting
class 0 of the generated 4-class task (MLP, α = 1e-6, three seeds): forget accuracy 96.6 → 26.0–28.8 and retain
94.5 → 95.2–95.8, against the oracle's 0.0 and 96.3; most of it comes from removing the head row (α = 1e-8 gives
21–30). Digit 0 of scikit-learn's digits: forget 100 → 0, retain 99.4 → 98.7–99.2 (oracle 0 and 99.7). On random
forgetting of in-distribution examples no row is removed and the noise lowers retain accuracy about as fast as
forget accuracy (same task, random 10%: α = 1e-5 gives forget 96.7 → 93.3–95.0 with retain 94.8 → 90.6–92.2,
α = 3e-5 forget 86.7–95.0 with retain 81.9–83.3; oracle 76.7 and 95.0): the method is weak there.

No training step is taken. Needs: retain data (its labels only for ``fisher='empirical'``); the forget set is read
only for its request and the model's output count; classification (the paper's setting).
Defaults (the authors' notebook): α = 1e-6 (its sweep: α in {1e-8, 1e-7, 1e-6, 1e-5}), max_variance = 1e3,
head_max_variance = 1e2, removed-row variance 1e-4, ×10 for the head and 1-D parameters, fisher = 'true';
forget_classes = None (from the request).
Grid: alpha in {1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3} (orders of magnitude: α is very sensitive), fisher in
{'true', 'empirical'}.

Deviations from the reference code: (a) the authors (and ``fisher_new``) recognise the head as any parameter whose
first dimension equals the number of classes, which also catches a hidden layer of that width; OPTML's ``fisher``
multiplies the noise by 10 wherever ``shape[-1] == 10`` (CIFAR-10's class count). Here the head is found by
``final_linear`` and no layer is recognised by its size. (b) The authors remove the class rows whenever a whole
class is forgotten (``num_to_forget is None``), ``fisher_new`` only when exactly 4500 examples are (a CIFAR-10
class); here the request says it, or ``forget_classes``. (c) The authors compute the Fisher with a batch-size-1
loop; here the same per-example quantity is vectorised. ``fisher_new`` squares the gradient of a 32-example batch
mean, and ``fisher`` adds 1e-8 to the gradient before squaring and clamps σ at 1e-3; neither is followed.
(d) Frozen parameters (``requires_grad=False``) are left as they are; the authors' loop would give them the
capped variance.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import features, targets, task_of
from ..devices import model_device, move
from ..per_sample import eval_mode, iter_per_sample_grads, trainable
from ._common import final_linear
from .base import Method, Needs, output_size, register

FISHER_KINDS = ("true", "empirical")
FISHER_EPS = 1e-8        # added to the Fisher before inverting it (authors' notebook)
CLASS_VARIANCE = 1e-4    # variance of a forgotten class's output row, before the head's x10 (authors' notebook)
SPREAD = 10.0            # variance multiplier of the head and of every 1-D parameter (authors' notebook)


@dataclass
class FisherArgs:
    alpha: float = 1e-6
    fisher: str = "true"
    max_variance: float = 1e3
    head_max_variance: float = 1e2
    forget_classes: list[int] | None = None
    chunk_size: int | None = None
    prune_dense_then_recover: float | None = None


def _accumulate(total: dict[str, torch.Tensor], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                weights: torch.Tensor | None, chunk_size: int | None) -> None:
    """total += Σ_i w_i · g_i² over the per-sample cross-entropy gradients g_i (= −∇ log p(y_i | x_i))."""
    for rows, grads in iter_per_sample_grads(model, x, y, loss=F.cross_entropy, chunk_size=chunk_size):
        for name, g in grads.items():   # g is a fresh tensor: square it in place
            sq = g.square_()
            if weights is not None:
                sq.mul_(weights[rows].reshape(-1, *([1] * (g.ndim - 1))))
            total[name] += sq.sum(0)


def diagonal_fisher(model: nn.Module, data: Dataset, kind: str = "true",
                    chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """The diagonal Fisher information of ``data`` at the model's weights, per trainable parameter (eval mode)."""
    if kind not in FISHER_KINDS:
        raise ValueError(f"fisher={kind!r} is not allowed; expected one of {', '.join(FISHER_KINDS)}")
    if task_of(data) != "classification":
        raise ValueError(f"the Fisher of a softmax classifier needs classification data; got {task_of(data)}")
    x = features(data)
    total = {n: torch.zeros_like(p) for n, p in trainable(model).items()}
    if kind == "empirical":
        _accumulate(total, model, x, targets(data), None, chunk_size)
    else:   # the expectation over the model's own prediction: no label is read
        device = model_device(model)
        with torch.no_grad(), eval_mode(model):
            probs = torch.cat([F.softmax(model(move(xs, device)), dim=-1) for xs in x.split(512)])
        for c in range(probs.shape[1]):
            _accumulate(total, model, x, torch.full((len(x),), c, dtype=torch.long, device=probs.device), probs[:, c],
                        chunk_size)
    return {n: t / len(x) for n, t in total.items()}


Gaussian = tuple[torch.Tensor, torch.Tensor]   # (mean, variance), each shaped like its parameter


def noise_distribution(model: nn.Module, fisher: dict[str, torch.Tensor], *, alpha: float,
                       max_variance: float = 1e3, head_max_variance: float = 1e2,
                       forget_classes: list[int] | tuple[int, ...] = ()) -> dict[str, Gaussian]:
    """The Gaussian each trainable parameter is drawn from, ``name -> (mean, variance)`` (steps 2–5 of the
    module docstring): α · min(1 / (F + 1e-8), cap), averaged over dimension 1; the head's rows of
    ``forget_classes`` set to mean 0, variance 1e-4; ×10 for the head and every 1-D parameter."""
    _, head = final_linear(model)
    head_ids = {id(p) for p in head.parameters()}
    rows = torch.as_tensor(list(forget_classes), dtype=torch.long, device=model_device(model))
    out = {}
    for name, p in trainable(model).items():
        is_head = id(p) in head_ids
        var = (1.0 / (fisher[name] + FISHER_EPS)).clamp(max=max_variance)
        if is_head:
            var = var.clamp(max=head_max_variance)
        var = alpha * var
        if var.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        mean = p.detach().clone()
        if is_head and len(rows):
            mean[rows] = 0.0
            var[rows] = CLASS_VARIANCE
        if is_head or p.ndim == 1:
            var = var * SPREAD
        out[name] = (mean, var)
    return out


def requested_classes(forget: Dataset) -> list[int]:
    """The classes of a class-wise forget request (a split made by ``split_forget(classes=...)``), else []."""
    request = getattr(forget, "request", None)
    if request is not None and request.is_classwise and request.classes:
        return [int(c) for c in request.classes]
    return []


@register
class FisherForgetting(Method):
    name = "fisher"
    summary = "Add Gaussian noise to the weights, scaled by the inverse diagonal Fisher information of the retain set."
    paper = ("Golatkar, Achille & Soatto, Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
             "Networks, CVPR 2020")
    reference = "https://github.com/AdityaGolatkar/SelectiveForgetting"
    needs = Needs(retain=True, labels=True, forget_labels=False)
    tasks = ("classification",)
    Args = FisherArgs
    grid = {"alpha": [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3], "fisher": list(FISHER_KINDS)}

    def validate(self) -> None:
        super().validate()
        a = self.args
        classes = a.forget_classes
        self.require(*[(arg, getattr(a, arg) > 0, "a number > 0") for arg in ("alpha", "max_variance",
                                                                               "head_max_variance")],
                     ("fisher", a.fisher in FISHER_KINDS, f"one of {', '.join(FISHER_KINDS)}"),
                     ("forget_classes", classes is None or (len(set(classes)) == len(classes)
                                                            and all(c >= 0 for c in classes)),
                      "distinct class indices >= 0, [] (no class removed) or None (from the forget request)"),
                     ("chunk_size", a.chunk_size is None or a.chunk_size >= 1,
                      "an integer >= 1 or None (automatic)"))

    def classes(self, model: nn.Module, forget: Dataset) -> list[int]:
        """The output rows to remove: ``forget_classes`` if given, else those of a class-wise request. Checks that
        the head found is the model's output layer."""
        a = self.args
        name, head = final_linear(model)
        k = output_size(model, move(features(forget)[:1], model_device(model)))
        if head.out_features != k:
            raise ValueError(f"the output layer found ({name or 'the model'}: {head.out_features} outputs) does "
                             f"not produce the model's {k} outputs; put the output layer in `model.head`")
        chosen = requested_classes(forget) if a.forget_classes is None else list(a.forget_classes)
        if chosen and max(chosen) >= k:
            raise ValueError(f"method 'fisher': forget_classes={chosen!r} is not allowed; the model has {k} classes "
                             f"(0..{k - 1})")
        return chosen

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        a = self.args
        classes = self.classes(model, forget)
        fisher = diagonal_fisher(model, retain, a.fisher, a.chunk_size)
        dist = noise_distribution(model, fisher, alpha=a.alpha, max_variance=a.max_variance,
                                  head_max_variance=a.head_max_variance, forget_classes=classes)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in trainable(model).items():
                mean, var = dist[name]
                noise = torch.randn(p.shape, generator=g, dtype=p.dtype, device="cpu")   # the same on every device
                p.copy_(mean + var.sqrt() * noise.to(p.device))
        return model
