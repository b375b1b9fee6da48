"""Exact service of a deletion request on a SISA ensemble: only the shards that held the rows are retrained, and
the result equals training those shards from scratch without the rows."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import expunge
from expunge.data import ArrayDataset
from expunge.data.datasets import resolve
from expunge.deletion.exact import is_sisa, serve_exact
from expunge.exact.sisa import SISA

SETTINGS = dict(shards=3, slices=2, epochs=4, lr=0.05, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def sisa_task():
    train, _ = expunge.data.digits()
    data = Subset(train, list(range(240)))
    arch = expunge.model("mlp", train, hidden=[16], seed=0)
    ensemble = SISA(**SETTINGS).fit(arch, data)
    return data, arch, ensemble


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_serving_retrains_only_the_affected_shards_and_equals_retraining_them_without_the_rows(sisa_task):
    data, arch, ensemble = sisa_task
    before = copy.deepcopy(ensemble.partition)
    # two rows of shard 0 (one in its last slice), one of shard 1; shard 2 holds none of them
    rows = [ensemble.partition[0][1][0], ensemble.partition[0][1][3], ensemble.partition[1][0][2]]
    served, info = serve_exact(ensemble, data, rows, seed=7)
    assert is_sisa(served) and served is not ensemble
    assert info["exact"] and info["removed"] == 3
    assert info["retrained"] == {"0": 1, "1": 0} and info["untouched_shards"] == [2]
    assert info["example_epochs"] < info["full_retrain_example_epochs"]
    assert ensemble.partition == before                    # the served model is a new one
    assert _states_equal(served.members[2], ensemble.members[2])
    assert not _states_equal(served.members[0], ensemble.members[0])
    # the same partition without the rows, trained from scratch with the same seeds
    scratch_partition = [[[p for p in sl if p not in rows] for sl in shard] for shard in before]
    scratch = SISA(**SETTINGS).fit(arch, data, partition=scratch_partition)
    for s in range(SETTINGS["shards"]):
        assert _states_equal(served.members[s], scratch.members[s]), f"shard {s} differs from retraining"
    base, idx = resolve(data)
    x = base.x[idx]
    assert torch.equal(served(x), scratch(x))
    assert expunge.provenance(served).history[-1] == "unlearn:sisa"


def test_data_loaded_again_names_the_same_rows_and_other_data_is_refused(sisa_task):
    data, _, ensemble = sisa_task
    base, idx = resolve(data)
    again = ArrayDataset(base.x[idx].clone(), base.y[idx].clone())    # the same rows, a new object
    rows = [ensemble.partition[2][0][0]]
    a, info_a = serve_exact(ensemble, data, rows)
    b, info_b = serve_exact(ensemble, again, rows)
    assert info_a["retrained"] == info_b["retrained"] == {"2": 0}
    assert all(_states_equal(a.members[s], b.members[s]) for s in range(SETTINGS["shards"]))
    other = ArrayDataset(base.x[idx].flip(0).clone(), base.y[idx].flip(0).clone())
    with pytest.raises(ValueError, match="not the data the SISA ensemble was trained on"):
        serve_exact(ensemble, other, rows)


def test_bad_requests_are_refused_before_any_work(sisa_task):
    data, arch, ensemble = sisa_task
    assert not is_sisa(arch)
    with pytest.raises(TypeError, match="needs a SISA ensemble"):
        serve_exact(arch, data, [0])
    with pytest.raises(ValueError, match="outside the 240 rows"):
        serve_exact(ensemble, data, [240])
    with pytest.raises(ValueError, match="names no rows"):
        serve_exact(ensemble, data, np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="some row twice"):
        serve_exact(ensemble, data, [3, 3])
    served, _ = serve_exact(ensemble, data, [5])
    with pytest.raises(ValueError, match="already deleted"):
        serve_exact(served, data, [5, 6])
    assert served.last_deletion is not None and served.last_deletion.removed == 1   # nothing half-done


def test_a_stream_of_requests_on_a_sisa_ensemble_is_served_exactly(sisa_task):
    data, arch, ensemble = sisa_task
    first, second = [ensemble.partition[0][0][1], ensemble.partition[2][1][0]], [ensemble.partition[0][1][2]]
    result = expunge.stream(ensemble, data, [first, second], method="sisa")
    assert not result.oracles and "avg_gap" not in result.steps[-1].scores
    at_once, _ = serve_exact(ensemble, data, first + second)
    assert all(_states_equal(result.model.members[s], at_once.members[s]) for s in range(SETTINGS["shards"]))
    with pytest.raises(ValueError, match="served exactly with method 'sisa'"):
        expunge.stream(ensemble, data, [first], method="finetune")
    with pytest.raises(ValueError, match="this model is not one"):
        expunge.stream(arch, data, [first], method="sisa")
