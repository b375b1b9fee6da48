"""Fresh networks built from a user seed are independent of the original built from that same seed: the oracle,
Bad Teacher's incompetent teacher and Blindspot's proxy each draw their initialisation from a seed stream of
their own, recorded in provenance, and runs stay bitwise repeatable."""
from __future__ import annotations

import copy
import doctest

import pytest
import torch

import expunge
import expunge.seeds
from expunge import ensemble as E
from expunge.data import digits
from expunge.data.builtin import diabetes
from expunge.methods import _common
from expunge.methods import bad_teacher as bad_teacher_module
from expunge.methods import blindspot as blindspot_module
from expunge.methods import retrain as retrain_module
from expunge.seeds import BLINDSPOT_PROXY_INIT, INCOMPETENT_TEACHER_INIT, ORACLE_INIT, derive
from tests.helpers import state_equal

SEED = 0


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float((flat(a) - flat(b)).norm())


@pytest.fixture(scope="module")
def digits_task():
    train, _ = digits(seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, seed=SEED)
    original = expunge.train(template, train, seed=SEED, epochs=4)
    return train, forget, retain, template, original


def record_fresh_initialisations(monkeypatch, module) -> list[torch.nn.Module]:
    """Copies of every network ``module`` initialises through ``fresh_initialisation``, as they were built."""
    built: list[torch.nn.Module] = []

    def recording(model, seed, init=None):
        fresh = _common.fresh_initialisation(model, seed, init)
        built.append(copy.deepcopy(fresh))
        return fresh

    monkeypatch.setattr(module, "fresh_initialisation", recording)
    return built


def test_derive_is_a_stable_hash_with_one_stream_per_purpose():
    assert doctest.testmod(expunge.seeds).failed == 0
    assert derive(0, "init", 3) == 1496117324           # fixed forever: SISA's shard seeds depend on it
    streams = {derive(s, p) for s in range(20) for p in (ORACLE_INIT, INCOMPETENT_TEACHER_INIT, BLINDSPOT_PROXY_INIT)}
    assert len(streams) == 60 and not streams & set(range(20))
    with pytest.raises(ValueError, match="purpose"):
        derive(0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        derive("zero", ORACLE_INIT)


def test_same_seed_would_rebuild_the_originals_initial_weights(digits_task):
    # The coincidence the seed streams avoid is real: re-initialising under the user's seed gives back exactly
    # the weights expunge.model started the original from.
    _, _, _, template, original = digits_task
    assert state_equal(_common.fresh_initialisation(original, SEED), template)


def test_oracle_starts_from_its_own_initialisation(digits_task, monkeypatch):
    _, forget, retain, template, original = digits_task
    built = record_fresh_initialisations(monkeypatch, retrain_module)
    expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED)
    (oracle_start,) = built
    assert not state_equal(oracle_start, template)
    assert state_equal(oracle_start, _common.fresh_initialisation(original, derive(SEED, ORACLE_INIT)))
    # as far from the original's start as an initialisation under an unrelated seed is
    other = _common.fresh_initialisation(original, 12345)
    assert distance(oracle_start, template) > 0.7 * distance(other, template)


def test_oracle_is_as_far_from_the_original_as_two_oracles_are_from_each_other(digits_task):
    _, forget, retain, _, original = digits_task
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED)
    other = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED + 1)
    to_original, between_oracles = distance(oracle, original), distance(oracle, other)
    assert 0.5 < to_original / between_oracles < 2.0, (to_original, between_oracles)


def test_oracle_is_bitwise_repeatable_and_records_its_init_seed(digits_task, tmp_path):
    _, forget, retain, _, original = digits_task
    a = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED)
    b = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED)
    assert state_equal(a, b)
    assert expunge.provenance(original).init_seed == SEED
    assert expunge.provenance(a).init_seed == derive(SEED, ORACLE_INIT) != SEED
    expunge.save_model(a, tmp_path / "oracle.safetensors")
    back = expunge.load_model(tmp_path / "oracle.safetensors")
    assert expunge.provenance(back).init_seed == derive(SEED, ORACLE_INIT)


def test_vectorised_oracles_use_the_oracle_stream(digits_task):
    _, forget, retain, _, original = digits_task
    ens = E.unlearn(original, forget=forget, retain=retain, method="retrain", seeds=[SEED, SEED + 1])
    assert [r.init_seed for r in ens.records] == [derive(SEED, ORACLE_INIT), derive(SEED + 1, ORACLE_INIT)]
    alone = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=SEED)
    assert distance(ens.member(0), alone) < 1e-3 * distance(alone, original)


def test_incompetent_teacher_is_not_the_originals_initialisation(digits_task, monkeypatch):
    _, forget, retain, template, original = digits_task
    built = record_fresh_initialisations(monkeypatch, bad_teacher_module)
    out = expunge.unlearn(original, forget=forget, retain=retain, method="bad_teacher", seed=SEED)
    (teacher,) = built
    assert not state_equal(teacher, template)
    assert state_equal(teacher, _common.fresh_initialisation(original, derive(SEED, INCOMPETENT_TEACHER_INIT)))
    assert expunge.provenance(out).auxiliary_seeds == {"incompetent_teacher": derive(SEED, INCOMPETENT_TEACHER_INIT)}


def test_blindspot_proxy_is_not_the_originals_initialisation(monkeypatch):
    train, _ = diabetes(seed=0)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("mlp", train, seed=SEED)
    original = expunge.train(template, train, seed=SEED, epochs=2, lr=0.01)
    built = record_fresh_initialisations(monkeypatch, blindspot_module)
    out = expunge.unlearn(original, forget=forget, retain=retain, method="blindspot", seed=SEED, proxy_epochs=1)
    (proxy,) = built
    assert not state_equal(proxy, template)
    assert state_equal(proxy, _common.fresh_initialisation(original, derive(SEED, BLINDSPOT_PROXY_INIT)))
    assert expunge.provenance(out).auxiliary_seeds == {"blindspot_proxy": derive(SEED, BLINDSPOT_PROXY_INIT)}
