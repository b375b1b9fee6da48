"""SISA training and exact deletion (Bourtoule et al., IEEE S&P 2021)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import expunge
from expunge.exact.sisa import SISA, SISAEnsemble
from expunge.data import generated_classification
from tests.helpers import state_equal

SETTINGS = dict(shards=3, slices=3, seed=0, epochs=6, lr=0.05, batch_size=32)


@pytest.fixture(scope="module")
def setup():
    train, test = generated_classification(n=600, seed=1)
    template = expunge.model("mlp", train, hidden=[32])
    ensemble = SISA(**SETTINGS).fit(template, train)
    return train, test, template, ensemble


def test_deletion_equals_retraining_the_shard_from_scratch_bitwise(setup):
    train, _, template, ens = setup
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in ens.members]
    forget, retain = expunge.split_forget(train, indices=[ens.partition[1][1][0], ens.partition[1][2][3]])
    out = ens.delete(forget)
    assert out.last_deletion.from_slice == {1: 1}
    scratch = SISA(**SETTINGS).fit(template, train, partition=out.partition)
    assert all(state_equal(a, b) for a, b in zip(out.members, scratch.members))
    for s in (0, 2):   # untouched shards were not retrained
        assert all(torch.equal(before[s][k], v) for k, v in out.members[s].state_dict().items())
    assert not torch.equal(before[1]["head.weight"], out.members[1].head.weight)
    assert all(torch.equal(before[1][k], v) for k, v in ens.members[1].state_dict().items()), "original changed"


def test_repeated_deletions_still_equal_scratch(setup):
    train, _, template, ens = setup
    first = ens.delete(positions=[ens.partition[0][2][0]])
    assert first.last_deletion.from_slice == {0: 2}
    second = first.delete(positions=[first.partition[0][0][1], first.partition[2][1][0]])
    assert second.last_deletion.from_slice == {0: 0, 2: 1}
    scratch = SISA(**SETTINGS).fit(template, train, partition=second.partition)
    assert all(state_equal(a, b) for a, b in zip(second.members, scratch.members))
    for s in range(3):
        assert all(torch.equal(second.checkpoints[s][k][n], scratch.checkpoints[s][k][n])
                   for k in range(4) for n in scratch.checkpoints[s][k])


def test_a_late_slice_costs_less_than_an_early_one(setup):
    _, _, _, ens = setup
    early = ens.delete(positions=[ens.partition[0][0][0]]).last_deletion
    late = ens.delete(positions=[ens.partition[0][2][0]]).last_deletion
    assert late.example_epochs < early.example_epochs
    assert early.example_epochs == ens.deletion_cost(ens.partition[0][0][0])
    assert ens.predicted_speedup() == pytest.approx(3 * 3 * 3 / (2 * 3 + 1), rel=0.05)


def test_fit_is_seeded_and_partitions_the_data(setup):
    train, _, template, ens = setup
    again = SISA(**SETTINGS).fit(template, train)
    assert all(state_equal(a, b) for a, b in zip(ens.members, again.members))
    flat = sorted(p for shard in ens.partition for sl in shard for p in sl)
    assert flat == list(range(len(train)))
    other = SISA(**dict(SETTINGS, seed=1)).partition(len(train))
    assert other != ens.partition


def test_slice_epochs_follow_the_paper():
    assert SISA(shards=1, slices=4, epochs=30).slice_epochs() == [12, 12, 12, 12]
    assert SISA(shards=1, slices=1, epochs=30).slice_epochs() == [30]
    e = SISA(shards=1, slices=3, epochs=5).slice_epochs()
    assert sum(e) == int(2 * 3 * 5 / 4) and max(e) - min(e) <= 1


def test_the_ensemble_evaluates_like_a_model(setup):
    train, test, _, ens = setup
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    scores = expunge.evaluate(ens, forget=forget, retain=retain, test=test)
    members = [expunge.evaluate(m, forget=forget, retain=retain, test=test)["test_acc"] for m in ens.members]
    assert scores["test_acc"] > 45                                   # four classes: chance is 25%
    assert scores["test_acc"] >= sum(members) / len(members) - 2     # the vote is no worse than a typical shard


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def ensemble_of(outputs, task="classification"):
    data = expunge.as_dataset(torch.zeros(len(outputs), 1), torch.arange(len(outputs)) % 2, task=task)
    from expunge.exact.sisa import _TrainingData

    members = [Fixed(o) for o in outputs]
    partition = [[[i]] for i in range(len(outputs))]
    ens = SISAEnsemble(SISA(shards=len(outputs)), _TrainingData(data), partition, members, [[None, None]] * 3)
    ens.task = task
    return ens


def test_majority_vote_with_deterministic_ties():
    x = torch.zeros(2, 1)
    assert ensemble_of([[2.0, 0, 0], [3.0, 0, 0], [0, 0, 9.0]])(x).argmax(1).tolist() == [0, 0]
    # one vote each for classes 0 and 1: the larger mean probability (class 1) wins
    assert ensemble_of([[1.0, 0, 0], [0, 5.0, 0]])(x).argmax(1).tolist() == [1, 1]
    # a perfect tie goes to the lowest class index
    assert ensemble_of([[1.0, 0, 0], [0, 1.0, 0]])(x).argmax(1).tolist() == [0, 0]
    out = ensemble_of([[2.0, 0, 0], [3.0, 0, 0], [0, 0, 9.0]])(x)
    assert torch.allclose(out.exp().sum(1), torch.ones(2))


def test_regression_predicts_the_mean_and_empty_shards_drop_out():
    ens = ensemble_of([[1.0], [2.0], [6.0]], task="regression")
    assert ens(torch.zeros(1, 1)).tolist() == [[3.0]]
    ens.partition[2] = [[]]
    assert ens(torch.zeros(1, 1)).tolist() == [[1.5]]


def test_the_method_unlearns_an_ensemble_and_refuses_anything_else(setup, task):
    train, _, _, ens = setup
    forget, retain = expunge.split_forget(train, fraction=0.02, seed=3)
    out = expunge.unlearn(ens, forget=forget, retain=retain, method="sisa")
    assert all(state_equal(a, b) for a, b in zip(out.members, ens.delete(forget).members))
    assert expunge.provenance(out).method == "sisa"
    with pytest.raises(ValueError, match="sisa unlearns a SISA ensemble; build one with expunge.exact.sisa"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="sisa")


def test_bad_requests_are_refused(setup, task):
    train, _, _, ens = setup
    with pytest.raises(ValueError, match="trained on"):
        ens.positions_of(task.forget)                     # drawn from another dataset
    p = ens.partition[0][0][0]
    once = ens.delete(positions=[p])
    with pytest.raises(ValueError, match="already deleted"):
        once.delete(positions=[p])
    with pytest.raises(ValueError, match="shards"):
        SISA(shards=0)
    with pytest.raises(ValueError, match="cannot fill"):
        SISA(shards=300, slices=3).partition(600)
    with pytest.raises(ValueError, match="more than one slice"):
        SISA(shards=1, slices=2, epochs=1).fit(nn.Linear(20, 4), train, partition=[[[0, 1], [1]]])


def test_checkpoints_on_disk_follow_deletions(setup, tmp_path):
    from safetensors.torch import load_file

    train, _, template, _ = setup
    ens = SISA(**dict(SETTINGS, epochs=3), checkpoint_dir=tmp_path).fit(template, train)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3 * 4
    ens.delete_([ens.partition[2][0][0]])
    on_disk = load_file(str(tmp_path / "shard002_slice003.safetensors"))
    assert all(torch.equal(on_disk[k], v) for k, v in ens.members[2].state_dict().items())
