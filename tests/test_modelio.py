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
