"""Devices and precision: resolving ``device=`` (with CUDA and MPS simulated), refusing absent devices before any
work, ``device="cpu"`` end to end, and a guard that methods create no tensor on the default device.

What only a GPU can check (``benchmarks/gpu.py --check`` does, in one short run): that every method's tensors and
batches are on CUDA (a CPU tensor meeting a CUDA one raises there), bf16 autocast, deterministic CUDA algorithms.
"""
from __future__ import annotations

import inspect
import os

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import expunge
from expunge import devices
from expunge import ensemble as E
from expunge.data import ArrayDataset, digits
from expunge.devices import check_precision, resolve_device
from expunge.methods import registered

from tests.helpers import state_equal


def machine(monkeypatch, cuda: int = 0, mps: bool = False) -> None:
    """Pretend this machine has ``cuda`` CUDA devices and (or not) Apple's MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


# -- resolution ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, mps, want", [(0, False, "cpu"), (0, True, "mps"), (2, True, "cuda:0"),
                                             (1, False, "cuda:0")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, want):
    machine(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(want)


@pytest.mark.parametrize("spec, want", [("cpu", "cpu"), ("CPU", "cpu"), (" cuda ", "cuda:0"), ("cuda:1", "cuda:1"),
                                        ("mps", "mps"), (torch.device("cuda", 1), "cuda:1"),
                                        (torch.device("cpu"), "cpu"), ("cpu:0", "cpu")])
def test_named_devices_resolve_when_present(monkeypatch, spec, want):
    machine(monkeypatch, cuda=2, mps=True)
    assert resolve_device(spec) == torch.device(want)


@pytest.mark.parametrize("cuda, mps, spec, available", [
    (0, False, "cuda", "cpu"),
    (0, False, "mps", "cpu"),
    (2, False, "cuda:2", "cuda:0, cuda:1, cpu"),
    (1, True, "cuda:7", "cuda:0, mps, cpu"),
    (0, True, "cuda:0", "mps, cpu"),
])
def test_absent_device_names_what_is_available(monkeypatch, cuda, mps, spec, available):
    machine(monkeypatch, cuda, mps)
    with pytest.raises(ValueError) as info:
        resolve_device(spec)
    assert str(info.value) == f"device {spec!r} is not available; available: {available}"


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:1", "tpu", "", "cuda0"])
def test_malformed_device_names_the_allowed_forms(spec):
    with pytest.raises(ValueError, match="expected one of auto, cpu, cuda, cuda:N, mps$"):
        resolve_device(spec)


def test_device_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(0)


def test_precision_rules(monkeypatch):
    assert check_precision("fp32", torch.device("cpu")) == "fp32"
    assert check_precision("bf16", torch.device("cuda", 0)) == "bf16"
    for dev in ("cpu", "mps"):
        with pytest.raises(ValueError, match="precision='bf16' needs a CUDA device"):
            check_precision("bf16", torch.device(dev))
    with pytest.raises(ValueError, match="expected one of fp32, bf16"):
        check_precision("float16", torch.device("cpu"))


# -- absent devices are refused before any work ------------------------------------------------------------------

def _tiny():
    train, test = digits(seed=0)
    train = ArrayDataset(train.x[:120], train.y[:120], task="classification", name="d120")
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    return train, test, forget, retain


def _no_work(monkeypatch):
    """Fail the test if anything trains."""
    import expunge.training as T

    def refuse(*a, **k):
        raise AssertionError("training started before the device was checked")
    monkeypatch.setattr(T, "fit", refuse)
    for mod in ("expunge.api", "expunge.ensemble.fitting"):
        monkeypatch.setattr(f"{mod}.fit", refuse)


@pytest.mark.parametrize("call", ["train", "unlearn", "ensemble.train", "ensemble.unlearn", "audit", "evaluate"])
def test_absent_device_is_refused_at_the_api_before_work(monkeypatch, call):
    train, test, forget, retain = _tiny()
    model = expunge.model("mlp", train, hidden=[8])
    machine(monkeypatch, cuda=0, mps=False)
    _no_work(monkeypatch)
    calls = {
        "train": lambda: expunge.train(model, train, device="cuda"),
        "unlearn": lambda: expunge.unlearn(model, forget=forget, retain=retain, device="cuda"),
        "ensemble.train": lambda: E.train(model, train, seeds=[0, 1], device="cuda"),
        "ensemble.unlearn": lambda: E.unlearn(model, forget=forget, retain=retain, seeds=[0, 1], device="cuda"),
        "audit": lambda: expunge.audit(model, train, test, forget=forget, retain=retain, method="finetune",
                                       recipe={"epochs": 1}, n_models=2, device="cuda"),
        "evaluate": lambda: expunge.evaluate(model, forget=forget, retain=retain, device="cuda"),
    }
    with pytest.raises(ValueError) as info:
        calls[call]()
    assert str(info.value) == "device 'cuda' is not available; available: cpu"


# -- device="cpu" end to end -------------------------------------------------------------------------------------

def test_cpu_device_end_to_end_equals_the_default():
    train, test, forget, retain = _tiny()
    template = expunge.model("mlp", train, hidden=[16])
    a = expunge.train(template, train, epochs=2, seed=3)
    b = expunge.train(template, train, epochs=2, seed=3, device="cpu", precision="fp32")
    assert state_equal(a, b)
    assert next(b.parameters()).device == torch.device("cpu")
    for method, args in (("finetune", {"epochs": 1}), ("ssd", {}), ("retrain", {"epochs": 1})):
        u1 = expunge.unlearn(a, forget=forget, retain=retain, method=method, seed=1, **args)
        u2 = expunge.unlearn(a, forget=forget, retain=retain, method=method, seed=1, device="cpu", **args)
        assert state_equal(u1, u2), method
    s1 = expunge.evaluate(u1, forget=forget, retain=retain, test=test, reference=a)
    s2 = expunge.evaluate(u2, forget=forget, retain=retain, test=test, reference=a, device="cpu")
    timing = ("seconds", "rte")
    assert {k: v for k, v in s1.items() if k not in timing} == {k: v for k, v in s2.items() if k not in timing}
    e1 = E.train(template, train, seeds=[0, 1], epochs=1)
    e2 = E.train(template, train, seeds=[0, 1], epochs=1, device="cpu")
    assert torch.equal(e1.predict(test), e2.predict(test))
    u1 = E.unlearn(e1.members(), forget=forget, retain=retain, method="finetune", seeds=[0, 1], epochs=1)
    u2 = E.unlearn(e2.members(), forget=forget, retain=retain, method="finetune", seeds=[0, 1], epochs=1,
                   device="cpu")
    assert torch.equal(u1.predict(test), u2.predict(test))


def test_use_sets_the_device_for_calls_without_one(monkeypatch):
    train, _, _, _ = _tiny()
    model = expunge.model("mlp", train, hidden=[8])
    with devices.use("cpu") as dev:
        assert dev == torch.device("cpu")
        assert devices.target_device(None, model) == torch.device("cpu")
        out = expunge.train(model, train, epochs=1)
    assert next(out.parameters()).device.type == "cpu"
    machine(monkeypatch, cuda=0)
    with pytest.raises(ValueError, match="not available; available: cpu"):
        with devices.use("cuda"):
            pass


def test_cuda_scope_turns_on_deterministic_algorithms_and_restores_them(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    with devices.run_scope(torch.device("cuda", 0), "fp32"):   # no CUDA call is made: flags only
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() == before
    with devices.run_scope(torch.device("cpu"), "fp32"):
        assert torch.are_deterministic_algorithms_enabled() == before


# -- methods create no tensor on the default device --------------------------------------------------------------

WATCHED = (os.sep + os.path.join("expunge", "methods") + os.sep, os.sep + os.path.join("expunge", "per_sample.py"),
           os.sep + os.path.join("expunge", "training.py"), os.sep + os.path.join("expunge", "ensemble") + os.sep,
           os.sep + os.path.join("expunge", "gen") + os.sep)


class DefaultDeviceFactories(TorchFunctionMode):
    """Records every tensor factory (zeros, randint, randperm, tensor, ...) that expunge's method, training,
    per-sample and generator code calls without ``device=``. Such a tensor lands on the default device (the CPU) whatever the
    model's device, which on a GPU is a silent fall-back or a device-mismatch error."""

    def __init__(self) -> None:
        super().__init__()
        self.factories = _device_constructors()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.factories and kwargs.get("device") is None:
            frame = inspect.currentframe().f_back
            while frame is not None and os.sep + "torch" + os.sep in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None and any(w in frame.f_code.co_filename for w in WATCHED):
                self.calls.add(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


def test_the_guard_catches_a_factory_without_device():
    with DefaultDeviceFactories() as guard:
        from expunge.methods._common import random_other_labels

        random_other_labels(torch.tensor([0, 1], device="cpu"), 3, torch.Generator().manual_seed(0))
        torch.zeros(3)                        # this file is not watched
    assert guard.calls == set()
    source = "def bad(n):\n    import torch\n    return torch.zeros(n)\n"
    namespace: dict = {}
    # a function compiled as if it were in a method file
    exec(compile(source, inspect.getfile(random_other_labels), "exec"), namespace)   # noqa: S102
    with DefaultDeviceFactories() as guard:
        namespace["bad"](2)
    assert any("zeros" in c for c in guard.calls)


@pytest.fixture(scope="module")
def originals():
    train, _, forget, retain = _tiny()
    out = {"mlp": expunge.train(expunge.model("mlp", train, hidden=[16]), train, epochs=2, seed=0),
           "cnn": expunge.train(expunge.model("cnn", train, width=4), train, epochs=2, seed=0)}
    from expunge.data import friedman

    rtrain, _ = friedman(n=120)
    rforget, rretain = expunge.split_forget(rtrain, fraction=0.1, seed=0)
    out["regression"] = expunge.train(expunge.model("mlp", rtrain, hidden=[8]), rtrain, epochs=1, seed=0)
    return out, (forget, retain), (rforget, rretain)


FAST = {"epochs": 1}
ARGS = {"ssd": {}, "influence": {}, "fisher": {}, "laf": {"vae_epochs": 1, "epochs": 1}, "scrub": {"epochs": 1,
        "msteps": 1}, "blindspot": {"epochs": 1, "proxy_epochs": 1}, "ct": {"epochs": 1}}


@pytest.mark.parametrize("name", sorted(n for n, c in registered().items() if not c.needs_special_original))
def test_methods_create_no_tensor_on_the_default_device(originals, name):
    models, (forget, retain), (rforget, rretain) = originals
    cls = registered()[name]
    if "classification" in cls.tasks:
        model, f, r = models["cnn" if cls.requires_conv else "mlp"], forget, retain
    elif "regression" in cls.tasks:
        model, f, r = models["regression"], rforget, rretain
    elif "generation" in cls.tasks:         # image generators: the generation conformance suite's tiny task
        pytest.importorskip("diffusers")
        from tests.conformance.test_generative_methods import GEN_CASES, KIND_TASKS

        task = KIND_TASKS[next((kind for n, _, kind in GEN_CASES if n == name), "diffusion")]()
        model, f, r = task.original, task.forget, task.retain
    else:                                   # language methods: the conformance suite's tiny task (or its override)
        pytest.importorskip("transformers")
        from tests.conformance.test_language_methods import LM_TASK_OVERRIDES
        from tests.lm_helpers import tiny_moe_task, tiny_qa_task

        task = tiny_moe_task() if name in LM_TASK_OVERRIDES else tiny_qa_task()   # the override is the MoE task
        model, f, r = task.original, task.forget, task.retain
    args = ARGS.get(name, FAST)
    args = {k: v for k, v in args.items() if k in {fld for fld in cls.Args.__dataclass_fields__}}
    with DefaultDeviceFactories() as guard:
        out = expunge.unlearn(model, forget=f, retain=r, method=name, seed=0, **args)
    assert next(out.parameters()).device.type == "cpu"
    assert not guard.calls, f"{name} creates tensors without device=: {sorted(guard.calls)}"


# -- the GPU benchmark and the bench's device key ----------------------------------------------------------------

def test_gpu_benchmark_skips_cleanly_without_a_gpu(monkeypatch, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    machine(monkeypatch, cuda=0)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "results" / "gpu.json"
    assert module.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == ["benchmarks/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured, "
                       "nothing written"]
    assert not (tmp_path / "results").exists()


def test_bench_device_key_changes_job_keys_only_off_the_cpu():
    from expunge.bench import expand
    from expunge.bench.spec import parse_bench

    raw = {"name": "b", "data": {"name": "iris"}, "scenarios": [{"name": "r", "fraction": 0.1}],
           "methods": {"finetune": {"epochs": 1}}}
    keys = lambda extra: set(expand(parse_bench({**raw, **extra})).jobs)   # noqa: E731
    assert keys({}) == keys({"device": "cpu"}) == keys({"device": "CPU"})
    gpu = keys({"device": "cuda:0"})          # only the form is checked: the jobs may run on another machine
    assert gpu.isdisjoint(keys({}))
