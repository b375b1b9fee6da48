"""The conformance table of the language task: every registered language method runs through the same checks on
the tiny question/answer task of ``tests/lm_helpers.py`` (24 people x 3 facts, a ~34k-parameter Llama model).

Each method needs a row in ``LM_CASES`` with arguments that make it do its job on that task (the papers' defaults
are for 7B models). Methods that declare ``forgets`` must raise the forget answers' NLL at least ``FORGET_PROGRESS``
of the way from the original's to the oracle's, keeping the retain answers' NLL within ``RETAIN_TOLERANCE`` nats
per token of the oracle's. A method made for another kind of model (UOE: mixture of experts) names its task in
``LM_TASK_OVERRIDES``.
"""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

import expunge  # noqa: E402
from expunge.methods import registered  # noqa: E402

from tests.helpers import state_equal  # noqa: E402
from tests.lm_helpers import answer_nll, tiny_moe_task, tiny_qa_task  # noqa: E402

# method -> arguments for the behaviour check on the tiny task (fast settings)
LM_CASES: dict[str, dict] = {
    "retrain": {},
    "grad_ascent": {"lr": 1e-3, "epochs": 10},
    "grad_diff": {"lr": 1e-3, "epochs": 12},
    "npo": {"lr": 1e-3, "epochs": 15, "beta": 0.5, "alpha": 2.0},
    "simnpo": {"lr": 3e-3, "epochs": 10, "forget_weight": 1.0},
    "idk_dpo": {"lr": 1e-2, "epochs": 25},
    "idk_nll": {"lr": 1e-2, "epochs": 30, "batch_size": 32},
    "undial": {"lr": 3e-3, "alpha": 1.0},
    "flat": {"lr": 5e-4, "epochs": 19},
    "rmu": {"epochs": 20, "batch_size": 4, "lr": 1e-2, "alpha": 10.0, "steering_coefficient": 10.0},
    "uoe": {"epochs": 20, "batch_size": 4, "lr": 3e-3, "alpha": 2.0},
    "wagle": {"epochs": 10, "batch_size": 4, "mask_ratio": 0.5, "alpha": 2.0},
}

FORGET_PROGRESS = 0.25   # fraction of the original-to-oracle distance in forget NLL a method must cover
RETAIN_TOLERANCE = 0.5   # nats per answer token above the oracle's retain NLL

# methods checked on another task than the tiny Llama one, and why
LM_TASK_OVERRIDES: dict[str, str] = {
    "uoe": "tiny_moe",   # unlearns one expert of a mixture-of-experts model; refuses models without experts
}


@pytest.fixture(scope="session")
def tiny_moe():
    """The tiny question/answer task learned by a tiny mixture-of-experts model (``tests/lm_helpers.py``)."""
    return tiny_moe_task()


def language_methods() -> list[str]:
    return [n for n, cls in registered().items() if "language" in cls.tasks]


def task_for(request, name: str):
    fixture = LM_TASK_OVERRIDES.get(name)
    return request.getfixturevalue(fixture) if fixture else tiny_qa_task()


def test_every_language_method_has_a_row():
    missing = sorted(set(language_methods()) - set(LM_CASES))
    assert not missing, f"registered language methods without a conformance row: {missing}"


@pytest.mark.parametrize("name", language_methods())
def test_returns_new_model_and_leaves_caller_untouched(request, name):
    task = task_for(request, name)
    before = {k: v.clone() for k, v in task.original.state_dict().items()}
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0,
                          **LM_CASES.get(name, {}))
    assert out is not task.original
    assert isinstance(out, expunge.lm.CausalLM)
    after = task.original.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the caller's model was modified"
    assert expunge.provenance(out).method == name


@pytest.mark.parametrize("name", language_methods())
def test_same_seed_same_weights(request, name):
    task = task_for(request, name)
    args = LM_CASES.get(name, {})
    a = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=3, **args)
    b = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=3, **args)
    assert state_equal(a, b)


@pytest.mark.parametrize("name", language_methods())
def test_unknown_argument_rejected(request, name):
    task = task_for(request, name)
    with pytest.raises(ValueError, match="unknown argument"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, not_an_argument=1)


@pytest.mark.parametrize("name", [n for n in language_methods() if registered()[n].forgets])
def test_forgets_and_keeps(request, name):
    """Forget answers' NLL rises toward the oracle's; retain answers stay near the oracle's."""
    task = task_for(request, name)
    out = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method=name, seed=0,
                          **LM_CASES.get(name, {}))
    orig, oracle, now = (answer_nll(m, task.forget) for m in (task.original, task.oracle, out))
    assert oracle > orig + 1.0, "the task must leave something to forget"
    assert now >= orig + FORGET_PROGRESS * (oracle - orig), (
        f"{name}: forget NLL {now:.3f} did not move toward the oracle's {oracle:.3f} from {orig:.3f}")
    retain_now, retain_oracle = answer_nll(out, task.retain), answer_nll(task.oracle, task.retain)
    assert retain_now <= retain_oracle + RETAIN_TOLERANCE, (
        f"{name}: retain NLL {retain_now:.3f} is more than {RETAIN_TOLERANCE} above the oracle's {retain_oracle:.3f}")


def test_retrain_starts_from_its_own_initialisation():
    """The language oracle is re-initialised from its configuration under the oracle's seed stream: far from the
    original in weight space, and its seed recorded."""
    task = tiny_qa_task()
    from expunge.methods.retrain import oracle_init_seed

    assert expunge.provenance(task.oracle).init_seed == oracle_init_seed(0)
    assert not state_equal(task.oracle, task.original)


def test_classification_method_on_text_names_the_language_methods():
    task = tiny_qa_task()
    with pytest.raises(ValueError, match=r"the data is language \(methods for language: .*retrain"):
        expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="finetune")


def test_bare_transformers_model_is_wrapped_with_the_data_tokenizer():
    task = tiny_qa_task()
    out = expunge.unlearn(task.original.hf, forget=task.forget, retain=task.retain, method="retrain", seed=0,
                          epochs=1, lr=1e-2)   # a bare transformers model carries no recipe
    assert isinstance(out, expunge.lm.CausalLM)
    assert out.tokenizer.get_vocab() == task.tokenizer.get_vocab()
