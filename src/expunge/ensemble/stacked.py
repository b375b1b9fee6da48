"""K models of one architecture held as stacked tensors and run together with ``torch.func.vmap``.

:class:`Ensemble` is an ordinary ``nn.Module`` whose parameters are the members' parameters stacked along a new
leading axis (``torch.func.stack_module_state``): parameter ``features/1/bias`` has shape ``[K, *shape]``. Its
forward ``vmap``s ``torch.func.functional_call`` of the architecture over that axis, so one call runs all K
members as batched matrix products. Because the members' parameters are disjoint slices, the gradient of a sum of
per-member losses gives every member exactly its own gradient, and elementwise optimisers (SGD with momentum and
weight decay, Adam, AdamW) keep per-member state; this is what lets ``expunge.training.fit`` train the ensemble as
one model.

The weights of ``nn.Linear`` layers are stored transposed (``[K, in, out]``; their names are in
``Ensemble.transposed``) and handed to the architecture as transposed views: ``x @ W.T`` then reads a contiguous
operand and yields contiguous gradients, which saves a copy per layer and step and runs the batched products
faster. :meth:`Ensemble.stacked` gives every tensor in the template's own layout.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import Dataset, Subset

from ..data.datasets import ArrayDataset, fingerprint, resolve
from ..devices import model_device, move
from ..provenance import Provenance, provenance, stamp


def _key(name: str) -> str:
    return name.replace(".", "/")


class _Shared:
    """A reference copied by reference (training data must not be duplicated when an ensemble is copied)."""

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


class Ensemble(nn.Module):
    """K members of one architecture, stacked. Build one from models with ``Ensemble(models)``, or train one with
    :func:`expunge.ensemble.train` / :func:`expunge.ensemble.unlearn`.

    - ``ens(x)`` with ``x`` shaped ``[K, B, ...]`` (one batch per member) returns ``[K, B, C]``;
      ``ens(x, shared=True)`` with ``x`` shaped ``[B, ...]`` runs every member on the same inputs;
    - :meth:`predict` gives all members' outputs on a dataset, ``[K, N, C]``, without unstacking;
    - :meth:`member` returns member ``i`` as an ordinary model of the template's class carrying its provenance;
    - ``records[i]`` is member ``i``'s provenance record, ``seeds[i]`` its seed.

    Stochastic layers (dropout) draw independently per member (``vmap(randomness="different")``) from one shared
    random stream, so their draws are not those of the member trained alone.
    """

    def __init__(self, models: Sequence[nn.Module], *, records: Sequence[Provenance] | None = None,
                 seeds: Sequence[int | None] | None = None):
        super().__init__()
        models = list(models)
        check_stackable(models)
        params, buffers = stack_module_state(models)
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.transposed = linear_weights(models[0])
        for name, value in params.items():
            stored = value.detach().transpose(-1, -2).contiguous() if name in self.transposed else value.detach()
            self.register_parameter(_key(name), nn.Parameter(stored, requires_grad=value.requires_grad))
        for name, value in buffers.items():
            self.register_buffer(_key(name), value)
        first = models[0]
        self._tied = (len(list(first.named_parameters(remove_duplicate=False))) != len(params)
                      or len(list(first.named_buffers(remove_duplicate=False))) != len(buffers))
        template = copy.deepcopy(first).to("meta")
        self.__dict__["_template"] = template          # kept out of the module tree: it holds no real weights
        recs = list(records) if records is not None else [provenance(m) for m in models]
        self.records: list[Provenance] = [copy.deepcopy(r) for r in recs]
        self.seeds: list[int | None] = list(seeds) if seeds is not None else [r.seed for r in self.records]
        if len(self.records) != len(models) or len(self.seeds) != len(models):
            raise ValueError(f"an ensemble of {len(models)} member(s) needs as many records and seeds; got "
                             f"{len(self.records)} record(s) and {len(self.seeds)} seed(s)")
        self._trained_on = _Shared(None)   # (base dataset, rows [K, n]) when the ensemble was trained here
        self._fingerprint_members = False
        self.train(first.training)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def template(self) -> nn.Module:
        """The architecture (on the ``meta`` device: structure only, no weights)."""
        return self.__dict__["_template"]

    def train(self, mode: bool = True) -> "Ensemble":
        super().train(mode)
        self.template.train(mode)
        return self

    def stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The stacked parameters and buffers keyed by the template's own names, in the template's layout."""
        params = {}
        for n in self.param_names:
            p = getattr(self, _key(n))
            params[n] = p.transpose(-1, -2) if n in self.transposed else p
        return params, {n: getattr(self, _key(n)) for n in self.buffer_names}

    def forward(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        params, buffers = self.stacked()
        names, template, tied = self.param_names + self.buffer_names, self.template, self._tied

        def one(values, xi):
            return functional_call(template, dict(zip(names, values)), (xi,), tie_weights=tied)
        values = tuple(params.values()) + tuple(buffers.values())
        return vmap(one, in_dims=(0, None if shared else 0), randomness="different")(values, x)

    @torch.no_grad()
    def predict(self, dataset: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
        """Every member's raw outputs (logits for classification) on every example of ``dataset``: ``[K, N, C]``, as
        a CPU tensor; each batch runs on the ensemble's device."""
        base, idx = resolve(dataset)
        device = model_device(self)
        was_training = self.training
        self.eval()
        outs = [self(move(base.x[chunk], device), shared=True) for chunk in idx.split(batch_size)]
        self.train(was_training)
        return torch.cat(outs, dim=1).cpu() if outs else torch.empty(len(self), 0)

    def member(self, i: int) -> nn.Module:
        """Member ``i`` as an ordinary model (the template's class), with its own copy of its weights and its
        provenance record."""
        k = len(self)
        if isinstance(i, bool) or not isinstance(i, int) or not -k <= i < k:
            raise ValueError(f"member index {i!r} is out of range for an ensemble of {k} member(s)")
        i %= k
        params, buffers = self.stacked()
        device = next(iter(params.values())).device if params else torch.device("cpu")
        out = copy.deepcopy(self.template).to_empty(device=device)
        with torch.no_grad():
            for name, t in list(out.named_parameters()) + list(out.named_buffers()):
                t.copy_({**params, **buffers}[name][i])
        out.train(self.training)
        record = self.records[i]
        stamp(out, None, **record.to_dict())
        if self._fingerprint_members and self._trained_on.value is not None:
            provenance(out).data_fingerprint = fingerprint(self.trained_on(i))
        return out

    def members(self) -> list[nn.Module]:
        return [self.member(i) for i in range(len(self))]

    def trained_on(self, i: int) -> Subset | None:
        """The data member ``i`` was trained on (in its order), when this ensemble was trained by expunge."""
        if self._trained_on.value is None:
            return None
        base, rows = self._trained_on.value
        return Subset(base, rows[i].tolist())

    def set_training_data(self, base: ArrayDataset, rows: torch.Tensor, *, fingerprint_members: bool = False) -> None:
        """Record that member k trained on ``base[rows[k]]``; with ``fingerprint_members`` each extracted member's
        record names that data by its fingerprint (computed on extraction), as ``expunge.train`` does."""
        self._trained_on = _Shared((base, rows))
        self._fingerprint_members = fingerprint_members

    def __repr__(self) -> str:
        return f"Ensemble({len(self)} x {type(self.template).__name__})"


def check_stackable(models: Sequence[nn.Module]) -> None:
    """Raise unless ``models`` are one or more modules of one class with identically named and shaped tensors."""
    if not models:
        raise ValueError("an ensemble needs at least one member; got none")
    for m in models:
        if not isinstance(m, nn.Module):
            raise TypeError(f"ensemble members must be torch nn.Modules; got {type(m).__name__}")
    first = models[0]
    shapes = _layout(first)
    for j, m in enumerate(models[1:], start=1):
        if type(m) is not type(first):
            raise ValueError(f"ensemble members must share one architecture; member 0 is {type(first).__name__} "
                             f"but member {j} is {type(m).__name__}")
        if _layout(m) != shapes:
            diff = sorted(set(_layout(m).items()) ^ set(shapes.items()))[:1]
            raise ValueError(f"member {j} has differently shaped parameters from member 0 (first difference: {diff})")
    bad = [n for n in shapes if "/" in n]
    if bad:
        raise ValueError(f"parameter name(s) {bad[:3]} contain '/', which ensembles use as a separator")


def linear_weights(model: nn.Module) -> set[str]:
    """Names of the weights of ``nn.Linear`` layers (stored transposed in an ensemble)."""
    return {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and isinstance(getattr(m, "weight", None), nn.Parameter)}


def _layout(m: nn.Module) -> dict[str, tuple]:
    return {n: (tuple(t.shape), str(t.dtype)) for n, t in list(m.named_parameters()) + list(m.named_buffers())}
