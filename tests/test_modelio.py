"""Model files: safetensors + JSON sidecar; pickles refused and never unpickled; atomic writes."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

import expunge
from expunge.modelio import sidecar_path
from tests.helpers import state_equal


@pytest.fixture
def trained():
    train, _ = expunge.data.digits()
    return expunge.train(expunge.model("mlp", train, hidden=[16]), train, epochs=1, seed=0)


def test_round_trip_rebuilds_named_architecture(trained, tmp_path):
    p = expunge.save_model(trained, tmp_path / "orig.safetensors")
    meta = json.loads(sidecar_path(p).read_text())
    assert meta["provenance"]["architecture"]["name"] == "mlp"
    assert meta["provenance"]["recipe"]["epochs"] == 1 and meta["provenance"]["data_fingerprint"]
    again = expunge.load_model(p)
    assert state_equal(again, trained)


def test_pickles_are_refused_without_unpickling(tmp_path, trained):
    class Bomb:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    for name, write in (("a.pt", lambda p: torch.save(trained.state_dict(), p)),
                        ("b.safetensors", lambda p: p.write_bytes(pickle.dumps(Bomb()))),
                        ("c.safetensors", lambda p: torch.save({"x": torch.ones(1)}, p))):
        path = tmp_path / name
        write(path)
        with pytest.raises(ValueError, match="pickle"):
            expunge.load_model(path, into=trained)
    with pytest.raises(ValueError, match="not pickle checkpoints"):
        expunge.save_model(trained, tmp_path / "x.pth")


def test_corrupt_missing_and_mismatched_files(tmp_path, trained):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        expunge.load_model(bad, into=trained)
    with pytest.raises(ValueError, match="not found"):
        expunge.load_model(tmp_path / "nope.safetensors", into=trained)
    p = expunge.save_model(trained, tmp_path / "ok.safetensors")
    other = expunge.models.MLP(64, 10, hidden=[8])
    with pytest.raises(ValueError, match="shape"):
        expunge.load_model(p, into=other)


def test_failed_save_leaves_nothing(tmp_path, trained, monkeypatch):
    import expunge.modelio as mio

    def broken_dumps(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mio.json, "dumps", broken_dumps)
    with pytest.raises(RuntimeError):
        expunge.save_model(trained, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


class _Failing:
    """Makes the ``fail_at``-th call of ``os.<name>`` (counted across the save) raise ENOSPC."""

    def __init__(self, monkeypatch, name, fail_at):
        import errno
        import os

        self.calls, real = 0, getattr(os, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            result = real(*args, **kwargs)
            if name == "fdopen":      # a file whose writes count as calls too
                return _FailingFile(result, self, fail_at)
            return result

        monkeypatch.setattr(os, name, wrapped)


class _FailingFile:
    def __init__(self, fh, counter, fail_at):
        self.fh, self.counter, self.fail_at = fh, counter, fail_at

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data):
        import errno

        self.counter.calls += 1
        if self.counter.calls == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.mark.parametrize("name", ["fdopen", "fsync", "link", "replace"])
def test_a_save_failing_at_any_step_keeps_the_previous_pair(tmp_path, trained, name, monkeypatch):
    """ENOSPC at each write, flush, link and rename of a save over an existing pair: the previous pair stays whole
    and loadable (or, where the step has a fallback, the new pair is written whole); no temporary file is left."""
    other = expunge.train(expunge.model("mlp", expunge.data.digits()[0], hidden=[16], seed=1),
                          expunge.data.digits()[0], epochs=1, seed=1)
    p = expunge.save_model(trained, tmp_path / "m.safetensors")
    old = (p.read_bytes(), sidecar_path(p).read_bytes())
    new_dir = tmp_path / "new"
    expunge.save_model(other, new_dir / "m.safetensors")
    new = ((new_dir / "m.safetensors").read_bytes(), (new_dir / "m.json").read_bytes())
    failed = 0
    for fail_at in range(1, 12):
        with monkeypatch.context() as m:
            _Failing(m, name, fail_at)
            try:
                expunge.save_model(other, p)
            except OSError as e:
                assert "No space left" in str(e)
                failed += 1
        pair = (p.read_bytes(), sidecar_path(p).read_bytes())
        assert _files(tmp_path) == ["m.json", "m.safetensors", "new"]       # no temporary file left behind
        if pair == new:
            break
        assert pair == old, f"{name} failing at call {fail_at} left a mixed pair"
        assert state_equal(expunge.load_model(p), trained)
    else:
        pytest.fail("the save never succeeded")
    assert failed >= (0 if name == "link" else 2)     # a failing link falls back to a copy
    assert state_equal(expunge.load_model(p), other)


def test_a_new_name_failing_part_way_leaves_nothing(tmp_path, trained, monkeypatch):
    with monkeypatch.context() as m:
        _Failing(m, "replace", 2)                      # the weights are in place, the sidecar rename fails
        with pytest.raises(OSError):
            expunge.save_model(trained, tmp_path / "m.safetensors")
    assert _files(tmp_path) == []


def test_mismatched_truncated_and_altered_pairs_are_named(tmp_path, trained):
    other = expunge.train(expunge.model("mlp", expunge.data.digits()[0], hidden=[16], seed=1),
                          expunge.data.digits()[0], epochs=1, seed=1)
    a = expunge.save_model(trained, tmp_path / "a.safetensors")
    b = expunge.save_model(other, tmp_path / "b.safetensors")
    a.write_bytes(b.read_bytes())                      # weights of one pair beside the sidecar of another
    with pytest.raises(ValueError, match="do not match the checksum their sidecar a.json records"):
        expunge.load_model(a)
    data = b.read_bytes()
    b.write_bytes(data[:-100])                         # truncated
    with pytest.raises(ValueError, match=r"not a valid safetensors file .*truncated"):
        expunge.load_model(b)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF                                 # one byte of the weights altered
    b.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        expunge.load_model(b)
    b.write_bytes(data)
    assert state_equal(expunge.load_model(b), other)


def test_a_sidecar_declaring_a_huge_layer_is_refused_before_allocating(tmp_path, trained):
    import time

    p = expunge.save_model(trained, tmp_path / "m.safetensors")
    meta = json.loads(sidecar_path(p).read_text())
    for drop in ((), ("tensors", "weights_sha256")):    # with and without the pair's own records
        for key in drop:
            meta.pop(key)
        meta["provenance"]["architecture"]["kwargs"].update(sample_shape=[100_000], hidden=[100_000])
        sidecar_path(p).write_text(json.dumps(meta))
        start = time.perf_counter()
        with pytest.raises(ValueError, match=r"expects \(100000, 100000\)") as info:
            expunge.load_model(p)
        assert time.perf_counter() - start < 0.5 and "\n" not in str(info.value)
    meta["provenance"]["architecture"]["kwargs"]["hidden"] = [8] * 5000
    sidecar_path(p).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="lists 5000 layers, the weights hold 4 tensors"):
        expunge.load_model(p)
    meta["tensors"] = {"features.1.weight": [100_000, 100_000]}
    sidecar_path(p).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not belong together"):
        expunge.load_model(p)


def test_a_header_declaring_more_data_than_the_file_holds_is_refused(tmp_path, trained):
    p = tmp_path / "h.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 40_000_000_000]}})
    p.write_bytes(len(header).to_bytes(8, "little") + header.encode() + b"\0" * 16)
    with pytest.raises(ValueError, match="truncated"):
        expunge.load_model(p, into=trained)
