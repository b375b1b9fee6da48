"""The prune-first protocol: ``expunge.sparsify`` builds a sparse original (one-shot magnitude pruning, rewinding,
masked retraining on the full data) that carries its mask, and every method keeps the masked weights at zero."""
from __future__ import annotations

import copy

import pytest
import torch

import expunge
from expunge.data import ArrayDataset, digits
from expunge.methods import registered
from expunge.methods.base import prunable, prune_in_place
from expunge.sparsity import (apply_masks, carried_masks, initial_weights, magnitude_masks, masked_training,
                              measured_sparsity, pruned_parameters)
from expunge.training import Recipe, batches, fit

from tests.helpers import state_equal

EPOCHS = 12


@pytest.fixture(scope="module")
def digits_cnn():
    """400 digits, a small CNN trained on them, and its 90%-sparse original."""
    train, test = digits(seed=0)
    train = ArrayDataset(train.x[:400], train.y[:400], task="classification", name="digits-400")
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    net = expunge.model("cnn", train, width=8, seed=0)
    original = expunge.train(net, train, epochs=EPOCHS, lr=0.05, seed=0)
    sparse = expunge.sparsify(original, train, sparsity=0.9, rewind=1)
    return dict(train=train, test=test, forget=forget, retain=retain, net=net, original=original, sparse=sparse)


def accuracy(model, data) -> float:
    with torch.no_grad():
        return float((model(data.x).argmax(1) == data.y).float().mean())


def zeros_kept(model, masks) -> bool:
    params = dict(model.named_parameters())
    return all(not bool(params[n][m == 0].any()) for n, m in masks.items())


def test_sparse_original_has_the_sparsity_and_recovers_its_accuracy(digits_cnn):
    t = digits_cnn
    layers, weights = pruned_parameters(t["original"])
    assert layers == "convolution" and all("head" not in n for n in weights)   # as the reference: convs only
    n = sum(w.numel() for w in weights.values())
    assert measured_sparsity(t["sparse"]) == pytest.approx(round(0.9 * n) / n, abs=1e-12)
    assert torch.equal(t["sparse"].head.weight != 0, torch.ones_like(t["sparse"].head.weight, dtype=torch.bool))
    pruned_only = apply_masks(copy.deepcopy(t["original"]), magnitude_masks(weights, 0.9))
    dense, cut, sparse = (accuracy(m, t["test"]) for m in (t["original"], pruned_only, t["sparse"]))
    assert cut < dense - 0.3, "pruning alone should cost accuracy on this model"
    assert sparse > cut + 0.3 and sparse > dense - 0.15, (dense, cut, sparse)
    record = expunge.provenance(t["sparse"]).sparse
    assert record["sparsity"] == 0.9 and record["rewind"] == 1 and record["layers"] == "convolution"
    assert expunge.provenance(t["sparse"]).history[-1] == "sparsify:0.9"
    assert expunge.provenance(t["original"]).sparse is None   # the original is left untouched


def test_rewinding_replays_the_originals_own_run(digits_cnn):
    """The initial weights rebuilt from provenance are the ones the original started from, and replaying the run
    without a mask reproduces the original bit for bit: the rewind point is the original's own early epoch."""
    t = digits_cnn
    init = initial_weights(t["original"])
    assert state_equal(init, t["net"])
    recipe = Recipe.from_dict(expunge.provenance(t["original"]).recipe)
    replay = masked_training(copy.deepcopy(init), t["train"], recipe, masks={}, from_epoch=EPOCHS, seed=0,
                             task="classification")
    assert state_equal(replay, t["original"])


def test_the_mask_survives_copy_and_files(digits_cnn, tmp_path):
    t = digits_cnn
    masks = carried_masks(t["sparse"])
    copied = copy.deepcopy(t["sparse"])
    assert all(torch.equal(masks[k], v) for k, v in carried_masks(copied).items())
    path = expunge.save_model(t["sparse"], tmp_path / "sparse.safetensors")
    back = expunge.load_model(path)
    assert expunge.provenance(back).sparse == expunge.provenance(t["sparse"]).sparse
    assert all(torch.equal(masks[k], v) for k, v in carried_masks(back).items())
    out = expunge.unlearn(back, forget=t["forget"], retain=t["retain"], method="finetune", epochs=1, lr=0.1)
    assert zeros_kept(out, masks)


def test_a_dense_model_carries_no_mask(digits_cnn):
    assert carried_masks(digits_cnn["original"]) == {} and measured_sparsity(digits_cnn["original"]) is None


def test_pins_are_needed(digits_cnn):
    """Training without the pins moves the zeros (so the check below can fail)."""
    t = digits_cnn
    masks = carried_masks(t["sparse"])
    free = fit(copy.deepcopy(t["sparse"]), batches(t["retain"], 64), recipe=Recipe(epochs=1, lr=0.1),
               task="classification")
    assert not zeros_kept(free, masks)


# fast arguments that make each method move the weights on the small CNN
FAST: dict[str, dict] = {
    "retrain": {"epochs": 2},
    "finetune": {"epochs": 1, "lr": 0.1},
    "gradient_ascent": {"epochs": 1, "lr": 0.01},
    "random_label": {"epochs": 1, "lr": 0.05},
    "neggrad_plus": {"epochs": 1, "lr": 0.05},
    "l1_sparse": {"epochs": 1, "lr": 0.1, "alpha": 5e-4},
    "salun": {"epochs": 1, "lr": 0.05},
    "ssd": {},
    "scrub": {"epochs": 1, "lr": 0.05, "msteps": 1},
    "bad_teacher": {"epochs": 1, "lr": 0.01},
    "boundary_shrink": {"epochs": 1, "lr": 0.01},
    "boundary_expand": {"epochs": 1, "lr": 0.01},
    "msg": {"epochs": 1, "lr": 0.1},
    "ct": {"epochs": 1, "lr": 0.05},
    "influence": {"alpha": 1.0, "max_samples": 64},
    "fisher": {"alpha": 1e-4},
    "laf": {"epochs": 1, "vae_epochs": 1, "lr": 1e-2},
    "identity": {},
}


def classification_methods() -> list[str]:
    """Every registered method that unlearns an ordinary classifier (sisa unlearns a SISA ensemble)."""
    return [n for n, cls in registered().items() if "classification" in cls.tasks
            and not cls.needs_special_original]


def test_every_classification_method_has_fast_arguments():
    assert set(classification_methods()) <= set(FAST), sorted(set(classification_methods()) - set(FAST))


@pytest.mark.parametrize("name", [n for n in classification_methods() if registered()[n].forgets])  # identity: a copy
def test_every_method_keeps_the_masked_weights_at_zero(digits_cnn, name):
    t = digits_cnn
    masks = carried_masks(t["sparse"])
    if name == "ct":   # CT transposes every kernel: its zeros go with their weights
        masks = {k: m.transpose(2, 3) for k, m in masks.items()}
    out = expunge.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method=name, seed=0,
                          **FAST.get(name, {}))
    assert zeros_kept(out, masks), f"{name}: a masked weight moved"
    assert measured_sparsity(out) == pytest.approx(measured_sparsity(t["sparse"]), abs=1e-3)
    assert not state_equal(out, t["sparse"]), f"{name} did not change the model (the check would be empty)"


def test_retrain_on_a_sparse_original_is_the_sparse_architecture_from_a_fresh_start(digits_cnn):
    t = digits_cnn
    oracle = expunge.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method="retrain", seed=0)
    masks = carried_masks(t["sparse"])
    assert all(torch.equal(carried_masks(oracle)[k], m) for k, m in masks.items())   # the same mask
    kept = {k: m.bool() for k, m in masks.items()}
    after, before = oracle.state_dict(), t["sparse"].state_dict()
    dist = sum(float((after[k] - before[k])[m].norm()) for k, m in kept.items())
    assert dist > 1.0   # not a copy of the sparse original's surviving weights


def test_the_old_behaviour_under_its_new_name(digits_cnn):
    """prune_dense_then_recover prunes the DENSE original inside unlearn (every linear and conv weight, head
    included) and keeps those zeros through the method."""
    t = digits_cnn
    out = expunge.unlearn(t["original"], forget=t["forget"], retain=t["retain"], method="finetune", epochs=1,
                          lr=0.1, prune_dense_then_recover=0.5)
    pruned = copy.deepcopy(t["original"])
    masks = prune_in_place(pruned, 0.5)
    assert "head.weight" in masks and bool((masks["head.weight"] == 0).any())   # the head is pruned too
    assert zeros_kept(out, masks)
    zeros = sum(int((w == 0).sum()) for w in prunable(out).values())
    assert zeros / sum(w.numel() for w in prunable(out).values()) == pytest.approx(0.5, abs=0.01)
    assert expunge.provenance(out).method_args["prune_dense_then_recover"] == 0.5
    with pytest.raises(ValueError, match="unknown argument.*'prune'"):
        expunge.unlearn(t["original"], forget=t["forget"], retain=t["retain"], method="finetune", prune=0.5)
    with pytest.raises(ValueError, match="already sparse"):
        expunge.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method="finetune",
                        prune_dense_then_recover=0.5)


def test_the_mlp_rule_prunes_hidden_linear_layers_only():
    train, _ = digits(seed=0)
    layers, weights = pruned_parameters(expunge.model("mlp", train, hidden=[32, 16]))
    assert layers == "hidden linear" and list(weights) == ["features.1.weight", "features.3.weight"]
    with pytest.raises(ValueError, match="nothing to prune"):
        pruned_parameters(torch.nn.Linear(4, 2))


def test_magnitude_masks_cut_the_smallest_exactly():
    w = {"a": torch.tensor([0.5, -0.1, 0.0]), "b": torch.tensor([[2.0, -0.2], [0.1, 0.0]])}
    m = magnitude_masks(w, 0.5)   # 7 weights, 4 cut: both zeros, then 0.1 (a) before 0.1 (b) by position
    assert m["a"].tolist() == [1.0, 0.0, 0.0] and m["b"].tolist() == [[1.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("bad, message", [
    (dict(sparsity=1.0), r"sparsity=1\.0 is not allowed; expected the fraction"),
    (dict(sparsity=0), r"sparsity=0 is not allowed"),
    (dict(sparsity=-0.5), r"sparsity=-0\.5 is not allowed"),
    (dict(sparsity=float("nan")), r"sparsity=nan is not allowed"),
    (dict(sparsity="0.9"), r"sparsity='0\.9' is not allowed"),
    (dict(sparsity=True), r"sparsity=True is not allowed"),
    (dict(rewind=EPOCHS), rf"rewind={EPOCHS} is not allowed; expected 'auto', None"),
    (dict(rewind=-1), r"rewind=-1 is not allowed"),
    (dict(rewind="early"), r"rewind='early' is not allowed"),
])
def test_bad_values_are_refused_with_one_line(digits_cnn, bad, message):
    with pytest.raises(ValueError, match=message) as e:
        expunge.sparsify(digits_cnn["original"], digits_cnn["train"], **bad)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_refused_before_training(digits_cnn):
    t = digits_cnn
    with pytest.raises(ValueError, match="already sparse"):
        expunge.sparsify(t["sparse"], t["train"])
    with pytest.raises(ValueError, match="not the data the original was trained on"):
        expunge.sparsify(t["original"], t["retain"])
    untrained = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.Linear(32, 10))
    with pytest.raises(ValueError, match="carries no training recipe"):
        expunge.sparsify(untrained, t["train"])
    foreign = expunge.train(untrained, t["train"], epochs=1, lr=0.01)   # no architecture record: no initial weights
    with pytest.raises(ValueError, match="needs the original's initial weights"):
        expunge.sparsify(foreign, t["train"], rewind=0)
    with pytest.raises(ValueError, match="rewind=None does not rewind"):
        expunge.sparsify(t["original"], t["train"], init=t["net"], rewind=None)
    with pytest.raises(TypeError, match="seed must be an integer"):
        expunge.sparsify(t["original"], t["train"], seed="0")
    with pytest.raises(TypeError, match="original must be a torch nn.Module"):
        expunge.sparsify("model.safetensors", t["train"])


@pytest.mark.parametrize("name", [n for n in classification_methods()
                                  if hasattr(__import__(registered()[n].__module__, fromlist=["fit"]), "fit")])
def test_masked_weights_stay_zero_after_every_step(digits_cnn, monkeypatch, name):
    """Not only the result: after every optimiser step of the method's training the masked weights are zero, and
    their gradients are zero before it (as for the reference's masked weights)."""
    t = digits_cnn
    masks = carried_masks(t["sparse"])
    if name == "ct":
        masks = {k: m.transpose(2, 3) for k, m in masks.items()}
    module = __import__(registered()[name].__module__, fromlist=["fit"])
    steps, grads = [], []

    def check(model):
        params = dict(model.named_parameters())
        steps.append(all(not bool(params[k][m == 0].any()) for k, m in masks.items() if k in params))

    def check_grads(model):
        params = dict(model.named_parameters())
        grads.append(all(params[k].grad is None or not bool(params[k].grad[m == 0].any())
                         for k, m in masks.items() if k in params))

    def fit_checked(*args, step_hooks=(), grad_hooks=(), **kwargs):
        return module_fit(*args, step_hooks=[*step_hooks, check], grad_hooks=[*grad_hooks, check_grads], **kwargs)

    module_fit = module.fit
    monkeypatch.setattr(module, "fit", fit_checked)
    expunge.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method=name, seed=0, **FAST.get(name, {}))
    assert steps and all(steps), f"{name}: a masked weight was non-zero after {steps.count(False)} step(s)"
    assert all(grads), f"{name}: a masked weight had a gradient in {grads.count(False)} step(s)"


def test_no_gradient_hook_is_left_on_the_result(digits_cnn):
    t = digits_cnn
    out = expunge.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method="finetune", epochs=1)
    assert not any(p._backward_hooks for p in out.parameters())
    assert not any(p._backward_hooks for p in t["sparse"].parameters())


# --- a sparse original per bench setup ---------------------------------------------------------------------------

def test_a_bench_setup_can_ask_for_a_sparse_original(tmp_path):
    from expunge.bench import LocalEngine, expand, parse_bench, run_bench
    from expunge.bench.runner import ModelCache

    from tests.bench.tiny import tiny

    models = [{"name": "mlp", "args": {"hidden": [16]}, "label": "dense"},
              {"name": "mlp", "args": {"hidden": [16]}, "label": "sparse", "sparse": {"sparsity": 0.8, "rewind": 1}}]
    cfg = tiny(seeds=1, model=models, scenarios=[{"name": "random 10%", "fraction": 0.1}],
               methods={"finetune": {"epochs": 1, "lr": 0.05}})
    bench = parse_bench(cfg)
    assert [s.sparse for s in bench.setups] == [None, {"sparsity": 0.8, "rewind": 1}]
    grid = expand(bench)
    originals = grid.by_stage("original")
    assert len(originals) == 2 and [o.spec.get("sparse") for o in originals] == [None, {"sparsity": 0.8, "rewind": 1}]
    dense_only = expand(parse_bench(tiny(seeds=1, model=models[:1], scenarios=cfg["scenarios"],
                                         methods=cfg["methods"])))
    assert dense_only.by_stage("original")[0].key == originals[0].key   # dense setups keep their job keys

    outcome = run_bench(bench, out=tmp_path / "o", engine=LocalEngine(1), report=False)
    assert not outcome.failures and not outcome.permanent
    cached = ModelCache(tmp_path / "o" / "cache").load(originals[1])
    assert expunge.provenance(cached).sparse["sparsity"] == 0.8
    assert measured_sparsity(cached) == pytest.approx(0.8, abs=0.01)
    assert measured_sparsity(ModelCache(tmp_path / "o" / "cache").load(originals[0])) is None


@pytest.mark.parametrize("sparse, path, message", [
    ({"sparsity": 1.5}, "model.sparse.sparsity", "sparsity=1.5 is not allowed"),
    ({"rewind": 99}, "model.sparse.rewind", "rewind=99 is not allowed"),
    ({"amount": 0.9}, "model.sparse.amount", "unknown key; allowed: sparsity, rewind"),
    ([0.9], "model.sparse", "expected a mapping"),
])
def test_bad_bench_sparse_sections_name_their_key(sparse, path, message):
    from expunge.bench import parse_bench
    from expunge.config import ConfigError

    from tests.bench.tiny import tiny

    with pytest.raises(ConfigError, match=message) as e:
        parse_bench(tiny(model={"name": "mlp", "args": {"hidden": [16]}, "sparse": sparse}))
    assert e.value.path == path


def test_ensemble_unlearning_of_a_sparse_original_keeps_its_zeros(digits_cnn):
    """The vectorised ensemble path cannot pin masks, so a sparse original runs member by member."""
    t = digits_cnn
    ens = expunge.ensemble.unlearn(t["sparse"], forget=t["forget"], retain=t["retain"], method="finetune",
                                   seeds=[0, 1], epochs=1, lr=0.1)
    masks = carried_masks(t["sparse"])
    for member in ens.members():
        assert zeros_kept(member, masks) and expunge.provenance(member).sparse is not None


def test_rewind_choices(digits_cnn):
    from expunge.sparsity import rewind_epoch

    assert rewind_epoch("auto", 182) == 8 and rewind_epoch("auto", EPOCHS) == 1 and rewind_epoch(None, 5) is None
    t = digits_cnn
    no_rewind = expunge.sparsify(t["original"], t["train"], sparsity=0.9, rewind=None)
    assert expunge.provenance(no_rewind).sparse["rewind"] is None
    assert measured_sparsity(no_rewind) == pytest.approx(measured_sparsity(t["sparse"]))
    _, weights = pruned_parameters(t["original"])
    pruned_only = apply_masks(copy.deepcopy(t["original"]), magnitude_masks(weights, 0.9))
    assert accuracy(no_rewind, t["test"]) > accuracy(pruned_only, t["test"]) + 0.3   # retrained from the pruned


def test_a_model_not_built_by_name_needs_init_to_rewind(digits_cnn):
    t = digits_cnn
    torch.manual_seed(0)
    untrained = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 10))
    original = expunge.train(untrained, t["train"], epochs=3, lr=0.05)
    sparse = expunge.sparsify(original, t["train"], sparsity=0.5, init=untrained, rewind=0)
    assert expunge.provenance(sparse).sparse["parameters"] == ["1.weight"]   # the output layer is not pruned
    assert measured_sparsity(sparse) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="init does not have the original's parameters"):
        expunge.sparsify(original, t["train"], init=torch.nn.Linear(64, 10), rewind=0)
