"""SISA training: an ensemble whose deletions retrain only the shard, and only the slices, that saw the data.

Paper: Bourtoule et al., "Machine Unlearning", IEEE S&P 2021.
Reference: https://github.com/cleverhans-lab/machine-unlearning
(``sisa.py``, ``aggregation.py``).

- **Sharded**: the training positions are split at random (under ``seed``) into ``shards`` disjoint shards; each
  shard trains its own copy of the model, from its own seeded fresh initialisation.
- **Isolated**: shards never share data or weights.
- **Sliced**: each shard is split into ``slices``; slice r is trained on slices 0..r together (cumulatively),
  starting from the weights after slice r − 1, and the weights after every slice are kept as a checkpoint
  (state dicts in memory; also safetensors files when ``checkpoint_dir`` is given).
- **Aggregated**: classification predicts by majority vote of the shards' labels; ties are broken by the shards'
  mean softmax probability, then by the lowest class index. The ensemble's output is the log of
  (votes + mean probability) / (shards + 1): its argmax is the vote, so ``expunge.evaluate`` scores the vote.
  Regression predicts the mean of the shards' outputs.

Epochs: ``epochs`` is what a single model would train. With R slices the paper keeps the total cost equal by
training each slice for 2R/(R+1)·e/R = 2e/(R+1) epochs on average; like the reference, slice r gets
⌊(r+1)·a⌋ − ⌊r·a⌋ epochs with a = 2e/(R+1), so the total is ⌊2Re/(R+1)⌋. Every other recipe field (optimiser,
lr, schedule, batch size, ...) applies to each slice's run.

Deleting examples removes them from their slices and retrains each affected shard from the checkpoint before its
earliest affected slice. Every slice is its own seeded ``training.fit`` run (fresh optimiser state, seed derived
from the ensemble seed, the shard and the slice), so the result equals, bitwise, training that shard from scratch
on what remains with the same partition. Shards left with no data drop out of the vote.

Deviations from the reference: the reference keeps one optimiser across slices and re-slices a shard after a
deletion (later slice boundaries shift); here slices keep their members and each slice restarts the optimiser,
which is what makes resuming from a checkpoint identical to retraining from scratch for any optimiser.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data.datasets import fingerprint, resolve
from ..methods._common import fresh_initialisation
from ..provenance import stamp
from ..seeds import derive
from ..training import Recipe, batches, fit

log = logging.getLogger(__name__)

Partition = list[list[list[int]]]   # shard -> slice -> positions in the training data


def derive_seed(seed: int, *parts: Any) -> int:
    """A 31-bit seed derived from ``seed`` and a label (e.g. shard and slice numbers): :func:`expunge.seeds.derive`."""
    return derive(seed, *parts)


class _TrainingData:
    """The data an ensemble was trained on. Shared, never copied, between copies of an ensemble."""

    def __init__(self, data: Dataset):
        self.base, self.idx = resolve(data)
        self.task = self.base.task
        self.row_to_position = {int(r): p for p, r in enumerate(self.idx.tolist())}

    def __deepcopy__(self, memo: dict) -> "_TrainingData":
        return self

    def subset(self, positions: Sequence[int]) -> Subset:
        return Subset(self.base, self.idx[torch.as_tensor(list(positions), dtype=torch.long)].tolist())


@dataclass(frozen=True)
class Deletion:
    """What one deletion retrained: shard -> first retrained slice, the cost in example-epochs, wall time."""

    removed: int
    from_slice: dict[int, int]
    example_epochs: int
    seconds: float


class SISA:
    """SISA training settings: ``SISA(shards=5, slices=4, epochs=30, lr=0.05, seed=0).fit(model, data)``.

    ``recipe`` keywords are the fields of :class:`expunge.training.Recipe`; ``epochs`` is the budget of one
    unsliced model (see the module docstring). ``init`` builds a fresh model for architectures that
    ``reset_parameters`` cannot re-initialise.
    """

    def __init__(self, *, shards: int, slices: int = 1, seed: int = 0, init: Callable[[], nn.Module] | None = None,
                 checkpoint_dir: str | Path | None = None, **recipe: Any):
        for name, v in (("shards", shards), ("slices", slices)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SISA: {name}={v!r} is not allowed; expected an integer >= 1")
        self.shards, self.slices, self.seed, self.init = shards, slices, int(seed), init
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.recipe = Recipe.from_dict(recipe)

    def slice_epochs(self) -> list[int]:
        a = 2 * self.recipe.epochs / (self.slices + 1)
        return [int((r + 1) * a) - int(r * a) for r in range(self.slices)]

    def partition(self, n: int) -> Partition:
        """The seeded random assignment of ``n`` training positions to shards and slices."""
        if n < self.shards * self.slices:
            raise ValueError(f"SISA: {n} training examples cannot fill {self.shards} shards x {self.slices} slices; "
                             "use fewer shards or slices")
        g = torch.Generator().manual_seed(derive_seed(self.seed, "partition"))
        perm = torch.randperm(n, generator=g)
        return [[sorted(sl.tolist()) for sl in torch.tensor_split(shard, self.slices)]
                for shard in torch.tensor_split(perm, self.shards)]

    def fit(self, model: nn.Module, data: Dataset, *, partition: Partition | None = None) -> "SISAEnsemble":
        """Train the ensemble on ``data`` (``model`` is the architecture; it is not modified). ``partition``
        overrides the random assignment (shard -> slice -> positions in ``data``)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
        shared = _TrainingData(data)
        part = self.partition(len(shared.idx)) if partition is None else _checked(partition, self, len(shared.idx))
        start = time.perf_counter()
        members, checkpoints = [], []
        for s in range(self.shards):
            member = fresh_initialisation(model, derive_seed(self.seed, "init", s), self.init)
            members.append(member)
            checkpoints.append([_state(member)] + [None] * self.slices)
        ens = SISAEnsemble(self, shared, part, members, checkpoints)
        for s in range(self.shards):
            ens._save_checkpoint(s, 0)
            ens._train_shard(s, 0)
        seconds = time.perf_counter() - start
        stamp(ens, task=shared.task, seed=self.seed, seconds=seconds, data_fingerprint=fingerprint(data),
              history=[f"sisa:{self.shards}x{self.slices}"])
        return ens.eval()


class SISAEnsemble(nn.Module):
    """A trained SISA ensemble: an ``nn.Module`` predicting by vote (classification) or mean (regression), with
    the partition and per-slice checkpoints needed to delete training examples exactly."""

    def __init__(self, config: SISA, data: _TrainingData, partition: Partition, members: list[nn.Module],
                 checkpoints: list[list[dict[str, torch.Tensor] | None]]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config, self._data, self.partition, self.checkpoints = config, data, partition, checkpoints
        self.task = data.task
        self.last_deletion: Deletion | None = None

    # -- prediction -----------------------------------------------------------------------------------------
    def active(self) -> list[int]:
        """Shards that still hold training data (the others drop out of the vote)."""
        return [s for s, shard in enumerate(self.partition) if any(shard)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        live = self.active()
        if not live:
            raise RuntimeError("every shard of the SISA ensemble has lost all its data; nothing can predict")
        outs = torch.stack([self.members[s](x) for s in live])
        if self.task == "regression":
            return outs.mean(0)
        votes = F.one_hot(outs.argmax(-1), outs.shape[-1]).sum(0).to(outs.dtype)
        mean_prob = F.softmax(outs, dim=-1).mean(0)
        return ((votes + mean_prob) / (len(live) + 1)).clamp_min(torch.finfo(outs.dtype).tiny).log()

    # -- deletion -------------------------------------------------------------------------------------------
    def positions_of(self, forget: Dataset) -> list[int]:
        """Positions in the training data of the examples of ``forget`` (a subset of that data, e.g. from
        ``split_forget``)."""
        base, idx = resolve(forget)
        if base is not self._data.base:
            raise ValueError("the forget set must be drawn from the dataset the SISA ensemble was trained on "
                             "(e.g. forget, retain = split_forget(train, ...) with the same train)")
        out = []
        for row in idx.tolist():
            if row not in self._data.row_to_position:
                raise ValueError(f"example {row} of the forget set is not in the ensemble's training data")
            out.append(self._data.row_to_position[row])
        return out

    def delete(self, forget: Dataset | None = None, *, positions: Sequence[int] | None = None) -> "SISAEnsemble":
        """A new ensemble without the given examples (a forget set, or ``positions`` in the training data); this
        one is left as it was."""
        out = copy.deepcopy(self)
        out.delete_(self.positions_of(forget) if forget is not None else list(positions or []))
        return out

    def delete_(self, positions: Sequence[int]) -> Deletion:
        """Delete in place: drop ``positions`` from their slices, retrain each affected shard from the checkpoint
        before its earliest affected slice. Returns what was retrained."""
        where = {p: (s, r) for s, shard in enumerate(self.partition) for r, sl in enumerate(shard) for p in sl}
        missing = sorted({int(p) for p in positions} - set(where))
        if missing:
            raise ValueError(f"position(s) {missing[:5]} are not in the ensemble's training data "
                             "(never trained on, or already deleted)")
        start = time.perf_counter()
        first: dict[int, int] = {}
        gone = {int(p) for p in positions}
        for p in gone:
            s, r = where[p]
            first[s] = min(first.get(s, r), r)
        for s in first:
            self.partition[s] = [[p for p in sl if p not in gone] for sl in self.partition[s]]
        cost = sum(self._train_shard(s, r) for s, r in sorted(first.items()))
        self.last_deletion = Deletion(len(gone), dict(sorted(first.items())), cost, time.perf_counter() - start)
        log.info("SISA deletion of %d example(s) retrained shard(s) %s", len(gone), self.last_deletion.from_slice)
        return self.last_deletion

    # -- cost model -----------------------------------------------------------------------------------------
    def deletion_cost(self, position: int) -> int:
        """Example-epochs that deleting one training position would retrain."""
        for s, shard in enumerate(self.partition):
            for r, sl in enumerate(shard):
                if position in sl:
                    return self._slice_cost(s, r)
        raise ValueError(f"position {position} is not in the ensemble's training data")

    def predicted_speedup(self) -> float:
        """Cost of retraining one unsliced model on all remaining data ÷ the expected cost of deleting one
        uniformly chosen training example (the paper's cost model, in example-epochs)."""
        sizes = {(s, r): len(sl) for s, shard in enumerate(self.partition) for r, sl in enumerate(shard)}
        n = sum(sizes.values())
        expected = sum(k * self._slice_cost(s, r) for (s, r), k in sizes.items()) / n
        return self.config.recipe.epochs * (n - 1) / expected

    def _slice_cost(self, s: int, r: int) -> int:
        """Example-epochs to delete one example of slice ``r`` of shard ``s``: slices r.. retrained, one smaller."""
        epochs, sizes = self.config.slice_epochs(), [len(sl) for sl in self.partition[s]]
        return sum(epochs[j] * (sum(sizes[:j + 1]) - 1) for j in range(r, len(sizes)))

    # -- training -------------------------------------------------------------------------------------------
    def _train_shard(self, s: int, first: int) -> int:
        """Restore shard ``s`` to its checkpoint before slice ``first`` and train slices ``first``.. onwards;
        returns the example-epochs spent."""
        cfg, member, cost = self.config, self.members[s], 0
        member.load_state_dict(self.checkpoints[s][first])
        for r, epochs in enumerate(cfg.slice_epochs()):
            if r < first:
                continue
            seen = [p for sl in self.partition[s][:r + 1] for p in sl]
            recipe = dataclasses.replace(cfg.recipe, epochs=epochs)
            fit(member, batches(self._data.subset(seen), recipe.batch_size), recipe=recipe, task=self.task,
                seed=derive_seed(cfg.seed, "slice", s, r), name=f"sisa shard {s} slice {r}")
            self.checkpoints[s][r + 1] = _state(member)
            self._save_checkpoint(s, r + 1)
            cost += epochs * len(seen)
        return cost

    def _save_checkpoint(self, s: int, k: int) -> None:
        if self.config.checkpoint_dir is None:
            return
        from safetensors.torch import save_file

        self.config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = {n: t.contiguous() for n, t in self.checkpoints[s][k].items()}
        save_file(state, str(self.config.checkpoint_dir / f"shard{s:03d}_slice{k:03d}.safetensors"))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _checked(partition: Partition, cfg: SISA, n: int) -> Partition:
    if len(partition) != cfg.shards or any(len(shard) != cfg.slices for shard in partition):
        raise ValueError(f"partition must list {cfg.shards} shards of {cfg.slices} slices each")
    flat = [int(p) for shard in partition for sl in shard for p in sl]
    if len(set(flat)) != len(flat):
        raise ValueError("partition assigns some position to more than one slice")
    bad = [p for p in flat if not 0 <= p < n]
    if bad:
        raise ValueError(f"partition positions out of range 0..{n - 1}: {bad[:5]}")
    return [[[int(p) for p in sl] for sl in shard] for shard in partition]


__all__ = ["SISA", "SISAEnsemble", "Deletion", "derive_seed"]
