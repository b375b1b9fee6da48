"""Classes forgotten one after another by a diffusion model (``expunge.sequential.unlearn_sequence`` on the
generation task): each step is scored on every class forgotten so far against the oracle retrained without them,
and the retained class keeps being generated."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import expunge  # noqa: E402
from expunge.data import split_forget  # noqa: E402
from expunge.sequential import unlearn_sequence  # noqa: E402
from tests.gen_helpers import tiny_generation_task  # noqa: E402


def test_two_classes_forgotten_in_turn_are_scored_against_the_oracle_of_their_union():
    task = tiny_generation_task()
    first, _ = split_forget(task.data, classes=[1])
    second, _ = split_forget(task.data, classes=[2])
    steps = unlearn_sequence(task.original, task.data, [first, second], method="gen_rl", seed=0, lr=1e-3,
                             evaluate_args={"samples_per_class": 10})
    assert [s.forgotten for s in steps] == [len(first), len(first) + len(second)]
    acc = [task.accuracy(s.model, n=30) for s in steps]
    before = task.accuracy(task.original, n=30)
    assert before[1] > 0.8 and before[2] > 0.8
    assert acc[0][1] < 0.5 * before[1]                                  # step 1 forgot class 1
    assert acc[1][1] < 0.5 * before[1] and acc[1][2] < 0.5 * before[2]   # step 2 forgot 2 and kept 1 forgotten
    assert acc[1][0] > 0.6 and acc[1][3] > 0.6                          # the retained classes still drawn
    last = steps[-1].scores
    assert "gap_unlearning_accuracy" in last and "reference_unlearning_accuracy" in last
    assert last["reference_unlearning_accuracy"] > 80           # the union's oracle never draws 1 or 2 as themselves
    assert isinstance(steps[-1].oracle, torch.nn.Module) and expunge.provenance(steps[-1].oracle).method == "retrain"
