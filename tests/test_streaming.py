"""Streamed data: features read by row (from .npy files, memory maps, image files, any Dataset) train through
the same loop and method code as in-memory data, give the same results, never read labels a method does not
need, and stay within a memory limit smaller than the data."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import expunge
from expunge.data import (StreamedDataset, digits, features, fingerprint, is_streamed, load_image_folder, load_npy,
                          resolve, split_forget, streamed)
from expunge.data import datasets as datasets_module
from expunge.training import Recipe, batches, fit

STREAMING_CHECKED = ["retrain", "finetune", "gradient_ascent", "neggrad_plus", "random_label", "scrub"]


def weights_hash(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()


@pytest.fixture(scope="module")
def digits_pair(tmp_path_factory):
    """Digits in memory and the same digits streamed from .npy files."""
    train, test = digits()
    folder = tmp_path_factory.mktemp("npy")
    for name, data in (("train", train), ("test", test)):
        base, _ = resolve(data)
        np.save(folder / f"{name}_x.npy", base.x.numpy())
        np.save(folder / f"{name}_y.npy", base.y.numpy())
    stream = lambda name, workers=0: load_npy(folder / f"{name}_x.npy", folder / f"{name}_y.npy", in_memory=False,
                                              num_workers=workers)
    return train, test, stream


@pytest.fixture(scope="module")
def original(digits_pair):
    train, _, _ = digits_pair
    return expunge.train(expunge.model("mlp", train, seed=0), train, seed=0, epochs=2)


def test_npy_streams_and_trains_to_the_same_weights(digits_pair):
    train, _, stream = digits_pair
    s = stream("train")
    assert isinstance(s, StreamedDataset) and is_streamed(s) and not is_streamed(train)
    assert fingerprint(s) == fingerprint(train)
    a = expunge.train(expunge.model("mlp", train, seed=1), train, seed=1, epochs=2)
    b = expunge.train(expunge.model("mlp", s, seed=1), s, seed=1, epochs=2)
    assert weights_hash(a) == weights_hash(b)


@pytest.mark.parametrize("method", STREAMING_CHECKED)
def test_methods_give_the_same_weights_on_streamed_data(digits_pair, original, method):
    train, _, stream = digits_pair
    fm, rm = split_forget(train, fraction=0.1, seed=0)
    fs, rs = split_forget(stream("train"), fraction=0.1, seed=0)
    a = expunge.unlearn(original, forget=fm, retain=rm, method=method, seed=0)
    b = expunge.unlearn(original, forget=fs, retain=rs, method=method, seed=0)
    assert weights_hash(a) == weights_hash(b)


def test_worker_processes_fetch_the_same_batches(digits_pair, original):
    train, _, stream = digits_pair
    fm, rm = split_forget(train, fraction=0.1, seed=0)
    fs, rs = split_forget(stream("train", workers=2), fraction=0.1, seed=0)
    a = expunge.unlearn(original, forget=fm, retain=rm, method="neggrad_plus", seed=0, epochs=2)
    b = expunge.unlearn(original, forget=fs, retain=rs, method="neggrad_plus", seed=0, epochs=2)
    assert weights_hash(a) == weights_hash(b)


def test_evaluate_scores_streamed_data_as_in_memory(digits_pair, original):
    train, test, stream = digits_pair
    fm, rm = split_forget(train, fraction=0.1, seed=0)
    fs, rs = split_forget(stream("train"), fraction=0.1, seed=0)
    a = expunge.evaluate(original, forget=fm, retain=rm, test=test)
    b = expunge.evaluate(original, forget=fs, retain=rs, test=stream("test"))
    timing = {"seconds", "rte"}
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


class LabelSpy:
    """Stands in for a streamed dataset's labels and records which rows were read."""

    def __init__(self, y: torch.Tensor):
        self.y, self.read = y, set()
        self.dtype, self.ndim, self.shape = y.dtype, y.ndim, y.shape

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        self.read.update(torch.as_tensor(idx).reshape(-1).tolist())
        return self.y[idx]


def test_workers_never_read_labels_a_method_does_not_need(digits_pair, original):
    _, _, stream = digits_pair
    s = stream("train", workers=2)
    forget, retain = split_forget(s, fraction=0.1, seed=0)
    spy = LabelSpy(s.y)
    s.y = spy
    out = expunge.unlearn(original, forget=forget, retain=retain, method="finetune", seed=0, epochs=1)
    forget_rows = set(resolve(forget)[1].tolist())
    assert spy.read and not spy.read & forget_rows        # retain labels read, forget labels never
    assert weights_hash(out) != weights_hash(original)


def test_a_label_free_loss_reads_no_label_through_the_worker_path(digits_pair):
    _, _, stream = digits_pair
    s = stream("train", workers=2)
    model = expunge.model("mlp", s, seed=0)
    spy = LabelSpy(s.y)
    s.y = spy
    loss = lambda m, batch, ctx: m(batch["data"].x).pow(2).mean()
    fit(model, batches(s, 256), recipe=Recipe(epochs=1, lr=0.01), loss_fn=loss)
    assert spy.read == set()


def test_methods_that_read_whole_sets_refuse_streamed_data_first(digits_pair, original):
    _, _, stream = digits_pair
    forget, retain = split_forget(stream("train"), fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="methods that stream: .*retrain"):
        expunge.unlearn(original, forget=forget, retain=retain, method="influence", seed=0)
    with pytest.raises(ValueError, match="streamed"):
        features(forget)


def test_memory_mapped_arrays_stream(tmp_path, digits_pair):
    train, _, _ = digits_pair
    base, _ = resolve(train)
    np.save(tmp_path / "x.npy", base.x.numpy())
    mapped = streamed(np.load(tmp_path / "x.npy", mmap_mode="r"), base.y.numpy())
    assert fingerprint(mapped) == fingerprint(train)
    np.save(tmp_path / "y.npy", base.y.numpy())
    also = load_npy(tmp_path / "x.npy", tmp_path / "y.npy", in_memory=False, mmap=True)
    assert fingerprint(also) == fingerprint(train)
    small = load_npy(tmp_path / "x.npy", tmp_path / "y.npy")           # under the threshold: in memory
    assert not is_streamed(small) and fingerprint(small) == fingerprint(train)


def test_streamed_files_are_checked(tmp_path):
    x = np.ones((10, 3), dtype=np.float32)
    x[4, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(10, dtype=np.int64))
    np.save(tmp_path / "y9.npy", np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="NaN or Inf in 1 row"):
        load_npy(tmp_path / "x.npy", tmp_path / "y.npy", in_memory=False)
    with pytest.raises(ValueError, match="differ in length"):
        load_npy(tmp_path / "x.npy", tmp_path / "y9.npy", in_memory=False)
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-8])
    with pytest.raises(ValueError, match="truncated"):
        load_npy(tmp_path / "cut.npy", tmp_path / "y.npy", in_memory=False)


def test_lazy_image_folder_decodes_on_demand(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    eager = load_image_folder(tmp_path)
    lazy = load_image_folder(tmp_path, lazy=True)
    assert is_streamed(lazy) and lazy.class_names == ["cat", "dog"]
    assert fingerprint(lazy) == fingerprint(eager)
    a = expunge.train(expunge.model("mlp", eager, seed=0), eager, seed=0, epochs=2, batch_size=4)
    b = expunge.train(expunge.model("mlp", lazy, seed=0), lazy, seed=0, epochs=2, batch_size=4)
    assert weights_hash(a) == weights_hash(b)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "dog" / "9.png")
    odd = load_image_folder(tmp_path, lazy=True)
    with pytest.raises(ValueError, match="differs from"):
        odd.x[torch.arange(len(odd))]


class Items(Dataset):
    """A user's map-style Dataset, read one item at a time."""

    def __init__(self, n: int, in_memory=None):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 5, generator=g), torch.arange(n) % 3
        if in_memory is not None:
            self.in_memory = in_memory

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_a_dataset_says_in_memory_false_or_is_larger_than_the_threshold(monkeypatch):
    assert is_streamed(Items(30, in_memory=False)) and not is_streamed(Items(30))
    monkeypatch.setattr(datasets_module, "STREAM_ABOVE_BYTES", 100)
    assert is_streamed(Items(30)) and not is_streamed(Items(30, in_memory=True))
    a, b = Items(30, in_memory=True), Items(30, in_memory=False)
    ma = expunge.train(expunge.model("mlp", a, seed=0), a, seed=0, epochs=2, batch_size=8)
    mb = expunge.train(expunge.model("mlp", b, seed=0), b, seed=0, epochs=2, batch_size=8)
    assert weights_hash(ma) == weights_hash(mb)


LIMITED = """
import json, resource, sys
import numpy as np, torch, expunge
from expunge.data import load_npy, split_forget

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

def train_and_unlearn(data):
    model = expunge.train(expunge.model("mlp", data, seed=0, hidden=(16,)), data, seed=0, epochs=1, batch_size=256)
    forget, retain = split_forget(data, fraction=0.1, seed=0)
    expunge.unlearn(model, forget=forget, retain=retain, method="finetune", seed=0, epochs=1)

folder, budget = sys.argv[1], int(sys.argv[2])
stream = load_npy(folder + "/x.npy", folder + "/y.npy", in_memory=False)
train_and_unlearn(expunge.as_dataset(torch.randn(300, 512), torch.arange(300) % 4))     # warm-up
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + budget,) * 2)
result = {}
for mode, data in (("stream", lambda: stream), ("memory", lambda: load_npy(folder + "/x.npy", folder + "/y.npy",
                                                                           in_memory=True))):
    try:
        train_and_unlearn(data())
        result[mode] = "trained"
    except (MemoryError, RuntimeError) as e:       # numpy's or torch's allocator
        result[mode] = "out of memory" if "alloc" in str(e) else repr(e)
print(json.dumps(result))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process size from /proc")
def test_trains_on_data_three_times_larger_than_its_memory_limit(tmp_path):
    """A fresh process limits its address space (RLIMIT_AS) to its size after a warm-up plus a budget; the data
    is three times the budget. Streamed, it trains; loaded in memory under the same limit, it cannot."""
    import json
    import subprocess
    import sys

    budget = 16 << 20
    n, d = (3 * budget) // (4 * 512), 512
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((n, d), dtype=np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 4, n))
    done = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path), str(budget)], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"stream": "trained", "memory": "out of memory"}


def test_readme_quotes_the_committed_larger_than_memory_run():
    import json

    root = Path(__file__).resolve().parents[1]
    r = json.loads((root / "benchmarks" / "results" / "larger_than_memory.json").read_text())
    readme = (root / "README.md").read_text()
    assert r["data_over_budget"] >= 3 and r["peak_address_space_mib"] <= r["limit_address_space_mib"]
    assert r["in_memory_under_the_same_limit"].startswith("refused")
    for text in (f"({r['data_mib']:.0f} MiB)", f"+ {r['budget_mib']} MiB", f"peak RSS {r['peak_rss_mib']} MiB",
                 f"peak address space {r['peak_address_space_mib']} MiB of {r['limit_address_space_mib']} MiB",
                 f"test accuracy {r['test_accuracy']:.3f}"):
        assert text in readme, f"README disagrees with benchmarks/results/larger_than_memory.json: {text}"
