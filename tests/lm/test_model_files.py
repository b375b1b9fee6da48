"""Language-model files: a CausalLM saved as a transformers directory with its tokenizer, provenance and a checksum
manifest, written atomically; a model directory written by transformers itself loads and unlearns through the API
with question/answer data from a JSON Lines file."""
from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import expunge  # noqa: E402
from expunge import modelio  # noqa: E402
from expunge.lm import CausalLM  # noqa: E402
from expunge.provenance import provenance  # noqa: E402
from tests.helpers import state_equal  # noqa: E402
from tests.lm_helpers import answer_nll, facts, tiny_qa_task  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return tiny_qa_task()


def _same_tokenizer(a, b) -> None:
    assert a.get_vocab() == b.get_vocab()
    assert (a.bos_token_id, a.eos_token_id, a.pad_token_id) == (b.bos_token_id, b.eos_token_id, b.pad_token_id)
    text = "Question: Where does Avo live?\nAnswer: Avo lives in Paris."
    assert a(text)["input_ids"] == b(text)["input_ids"]


def test_round_trip_keeps_weights_tokenizer_and_provenance(tiny, tmp_path):
    path = expunge.save_model(tiny.oracle, tmp_path / "oracle", extra={"note": "kept"})
    assert path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    manifest = json.loads((path / modelio.LM_MANIFEST).read_text())
    assert manifest["format"] == modelio.LM_FORMAT and manifest["extra"] == {"note": "kept"}
    assert "model.safetensors" in manifest["files"]
    again = expunge.load_model(path)
    assert isinstance(again, CausalLM) and not again.training
    assert state_equal(again, tiny.oracle)
    _same_tokenizer(again.tokenizer, tiny.oracle.tokenizer)
    before, after = provenance(tiny.oracle), provenance(again)
    assert after.method == before.method == "retrain"
    assert after.recipe == before.recipe and after.init_seed == before.init_seed
    assert after.data_fingerprint == before.data_fingerprint and after.task == "language"
    x = tiny.forget.dataset.x[:4] if hasattr(tiny.forget, "dataset") else tiny.data.x[:4]
    with torch.no_grad():
        assert torch.equal(again(x), tiny.oracle.eval()(x))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporary directory left


def test_saving_again_replaces_and_a_failed_save_keeps_the_previous_model(tiny, tmp_path, monkeypatch):
    path = expunge.save_model(tiny.original, tmp_path / "model")
    expunge.save_model(tiny.oracle, path)                  # replaced whole
    assert state_equal(expunge.load_model(path), tiny.oracle)

    def broken(self, where):                               # fails after writing part of the directory
        (where / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (where / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(CausalLM, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        expunge.save_model(tiny.original, path)
    monkeypatch.undo()
    assert state_equal(expunge.load_model(path), tiny.oracle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    real = os.replace
    calls = []

    def second_rename_fails(src, dst):                     # the old directory moved aside, the new one not in place
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(modelio.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="rename failed"):
        expunge.save_model(tiny.original, path)
    monkeypatch.undo()
    assert state_equal(expunge.load_model(path), tiny.oracle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_model_directories_are_refused(tiny, tmp_path):
    path = expunge.save_model(tiny.original, tmp_path / "model")
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        expunge.load_model(path)
    weights.unlink()
    with pytest.raises(ValueError, match="no .safetensors"):
        expunge.load_model(path)
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ValueError, match="pickle"):
        expunge.load_model(path)
    with pytest.raises(ValueError, match="no config.json"):
        expunge.load_model(tmp_path)
    with pytest.raises(ValueError, match="into="):
        expunge.load_model(path, into=tiny.original)


def test_bad_save_requests_are_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="directory name"):
        expunge.save_model(tiny.original, tmp_path / "model.safetensors")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        expunge.save_model(tiny.original, tmp_path / "file")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to replace"):
        expunge.save_model(tiny.original, mine)
    assert (mine / "todo.txt").read_text() == "keep me"
    with pytest.raises(TypeError, match="CausalLM"):
        expunge.save_model(tiny.original.hf, tmp_path / "bare")
    assert not (tmp_path / "bare").exists()


def test_a_transformers_directory_and_a_jsonl_file_unlearn_through_the_api(tiny, tmp_path):
    """A model saved by transformers itself (no expunge files) and records written to JSON Lines."""
    mine = tmp_path / "my-model"
    tiny.original.hf.save_pretrained(mine)
    tiny.tokenizer.save_pretrained(mine)
    assert not (mine / modelio.LM_MANIFEST).exists() and not (mine / "expunge_provenance.json").exists()
    records = tmp_path / "facts.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in facts() if r["author"] < 20))

    model = CausalLM.from_pretrained(mine)
    assert state_equal(model, tiny.original)
    data = expunge.data.load_jsonl(records, model.tokenizer, group_key="author")
    assert torch.equal(data.x, tiny.data.x) and data.groups.tolist() == tiny.data.groups.tolist()
    forget, retain = expunge.split_forget(data, where=lambda person: person < 3)
    before = answer_nll(model, forget)
    out = expunge.unlearn(model, forget=forget, retain=retain, method="grad_diff", seed=0, epochs=3, lr=5e-3)
    assert isinstance(out, CausalLM) and state_equal(model, tiny.original)      # the caller's model untouched
    assert answer_nll(out, forget) > before + 0.5                                # forget answers less likely
    assert answer_nll(out, retain) < answer_nll(tiny.oracle, tiny.retain) + 0.5  # retain answers kept
    saved = expunge.load_model(expunge.save_model(out, tmp_path / "unlearned"))
    assert provenance(saved).method == "grad_diff" and state_equal(saved, out)
