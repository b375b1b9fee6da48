"""Deletion certificates: salted row digests (never the rows), model hashes that equal hashlib of the files, the
recorded fields, the Markdown rendering, atomic writes and bad input."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

import expunge
from expunge.data import ArrayDataset
from expunge.data.datasets import streamed
from expunge.deletion.certificate import (FORMAT, build_certificate, certificate_markdown, file_sha256,
                                          model_files, new_salt, read_certificate, read_salt, row_bytes,
                                          row_digests, row_matches, write_certificate, write_salt)

SECRET = 12345.6789                       # a feature value that must never appear in a certificate


def _data() -> ArrayDataset:
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    x[5, 1] = SECRET
    return ArrayDataset(x, np.array([0, 1, 0, 1, 0, 1, 0, 1]), groups=np.array(["ann", "bo", "cy", "dee", "eve",
                                                                                 "zelda-private", "gus", "hal"]))


def _model(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    expunge.save_model(torch.nn.Linear(3, 2), path)
    return path


def _certificate(tmp_path: Path, **overrides) -> dict:
    salt = new_salt()
    kwargs = dict(request_id="req-1", request="group:zelda-private", row_digests=row_digests(_data(), [5], salt),
                  salt_hex=salt.hex(), method="finetune", args={"lr": 0.01, "epochs": 2}, seed=3,
                  input_model=_model(tmp_path / "original.safetensors", 0),
                  output_model=_model(tmp_path / "unlearned.safetensors", 1),
                  evidence={"summary": "no oracle was trained (--evidence none)", "tier": 0}, wall_seconds=1.25)
    kwargs.update(overrides)
    return build_certificate(**kwargs)


def test_row_digest_is_the_salted_sha256_of_the_documented_encoding():
    data, salt = _data(), bytes(range(32))
    got = row_digests(data, [2, 5], salt)
    x, y = data.x[5], data.y[5]
    header = {"encoding": "expunge-row/1", "features": ["float32", [3]], "label": ["int64", []],
              "group": ["str", "zelda-private"]}
    encoded = (json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
               + x.numpy().astype("<f4").tobytes() + y.numpy().astype("<i8").tobytes())
    assert row_bytes(x, y, "zelda-private") == encoded
    assert got[1] == hashlib.sha256(salt + encoded).hexdigest()
    assert got[0] != got[1] and len(got) == 2


def test_row_digests_depend_on_content_and_salt_not_position():
    data, salt = _data(), new_salt()
    moved = ArrayDataset(data.x.flip(0), data.y.flip(0), groups=data.groups[::-1].copy())
    assert row_digests(data, [5], salt) == row_digests(moved, [2], salt)          # same row, another position
    assert row_digests(data, [5], salt) != row_digests(data, [5], new_salt())     # another salt
    # the group is typed: user 17 and user "17" are different rows
    a = ArrayDataset(data.x[:1], data.y[:1], groups=np.array([17]))
    b = ArrayDataset(data.x[:1], data.y[:1], groups=np.array(["17"]))
    assert row_digests(a, [0], salt) != row_digests(b, [0], salt)
    # subsets index their own rows; streamed features give the same digests as in-memory ones
    subset = torch.utils.data.Subset(data, [7, 5, 1])
    assert row_digests(subset, [1], salt) == row_digests(data, [5], salt)
    stream = streamed(data.x.numpy(), data.y, groups=data.groups)
    assert row_digests(stream, [5, 0, 7], salt) == row_digests(data, [5, 0, 7], salt)


def test_certificate_never_holds_the_removed_rows(tmp_path):
    cert = _certificate(tmp_path)
    text = json.dumps(cert) + certificate_markdown(cert)
    x = _data().x[5]
    assert "12345" not in text and "zelda" not in text.replace("group:zelda-private", "")
    assert x.numpy().astype("<f4").tobytes().hex() not in text
    assert cert["removed_rows"] == 1 and len(cert["row_digests"]) == 1


def test_model_hashes_equal_hashlib_of_the_files(tmp_path):
    cert = _certificate(tmp_path)
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    for role, name in (("input_model", "original"), ("output_model", "unlearned")):
        weights, sidecar = tmp_path / f"{name}.safetensors", tmp_path / f"{name}.json"
        record = cert[role]
        assert record["files"] == {sidecar.name: sha(sidecar), weights.name: sha(weights)}
        # the aggregate is `sha256sum NAME.json NAME.safetensors | sha256sum`
        lines = f"{sha(sidecar)}  {sidecar.name}\n{sha(weights)}  {weights.name}\n"
        assert record["sha256"] == hashlib.sha256(lines.encode()).hexdigest() == file_sha256(weights)
    assert cert["input_model"]["sha256"] != cert["output_model"]["sha256"]


def test_model_directory_is_hashed_over_a_sorted_manifest(tmp_path):
    d = tmp_path / "lm"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "sub" / "b.bin").write_bytes(b"\x00\x01")
    (d / "a.safetensors").write_bytes(b"weights")
    files = model_files(d)
    assert list(files) == ["a.safetensors", "config.json", "sub/b.bin"]
    assert files["sub/b.bin"] == hashlib.sha256(b"\x00\x01").hexdigest()
    lines = "".join(f"{files[n]}  {n}\n" for n in sorted(files))
    assert file_sha256(d) == hashlib.sha256(lines.encode()).hexdigest()
    (d / "config.json").write_text('{"changed": 1}')
    assert file_sha256(d) != hashlib.sha256(lines.encode()).hexdigest()


def test_certificate_records_every_field_and_writes_json_and_markdown(tmp_path):
    cert = _certificate(tmp_path, exact=True, previous_request="req-0")
    assert cert["format"] == FORMAT and cert["request_id"] == "req-1" and cert["request"] == "group:zelda-private"
    assert datetime.fromisoformat(cert["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert (cert["method"], cert["args"], cert["seed"], cert["exact"]) == ("finetune", {"lr": 0.01, "epochs": 2},
                                                                         3, True)
    assert cert["versions"]["expunge"] == expunge.__version__ and cert["versions"]["torch"] == torch.__version__
    assert cert["evidence"]["tier"] == 0 and cert["wall_seconds"] == 1.25 and cert["previous_request"] == "req-0"
    assert "salt" not in cert and len(cert["salt_sha256"]) == 64
    out = tmp_path / "out"
    json_path, md_path = write_certificate(cert, out)
    assert read_certificate(json_path) == cert and read_certificate(out) == cert
    md = md_path.read_text()
    for text in ("req-1", "group:zelda-private", cert["output_model"]["sha256"], cert["row_digests"][0],
                 "no oracle was trained", "exact", "`req-0`", "finetune"):
        assert text in md, text
    assert sorted(p.name for p in out.iterdir()) == ["certificate.json", "certificate.md"]   # no temporary files


def test_markdown_states_the_evidence_in_words_and_numbers(tmp_path):
    cert = _certificate(tmp_path, evidence={"headline": "indistinguishable from retraining on this test at 1% FPR",
                                            "statement": "Evidence tier 1 (per-example LiRA)", "tier": 1,
                                            "numbers": {"lira": {"tpr": 0.0123456}}})
    md = certificate_markdown(cert)
    assert "| evidence | indistinguishable from retraining on this test at 1% FPR |" in md
    assert "| evidence tier | Evidence tier 1 (per-example LiRA) |" in md and "- numbers.lira.tpr: 0.01235" in md


def test_non_finite_evidence_numbers_are_recorded_as_strings(tmp_path):
    cert = _certificate(tmp_path, evidence={"summary": "s", "tier": 1, "tpr": float("nan"), "k": np.int64(4)})
    assert cert["evidence"] == {"summary": "s", "tier": 1, "tpr": "NaN", "k": 4}


@pytest.mark.parametrize("overrides, message", [
    ({"request_id": "has space"}, "request_id 'has space' is not allowed"),
    ({"salt_hex": "ab"}, "at least 16 bytes"),
    ({"row_digests": ["not-a-digest"]}, "SHA-256 hex digests"),
    ({"args": {"model": object()}}, "args.model: a object cannot be recorded"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"wall_seconds": -1.0}, "wall_seconds must be a finite number"),
    ({"output_model": Path("missing.safetensors")}, "model file not found"),
])
def test_bad_input_is_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(")) as info:
        _certificate(tmp_path, **overrides)
    assert "\n" not in str(info.value)


def test_bad_rows_and_salts_are_refused():
    data = _data()
    with pytest.raises(ValueError, match="row index 8 is out of range; the data has 8 rows"):
        row_digests(data, [1, 8], new_salt())
    with pytest.raises(ValueError, match="appears more than once"):
        row_digests(data, [1, 1], new_salt())
    with pytest.raises(ValueError, match="at least 16 random bytes"):
        row_digests(data, [1], b"short")
    with pytest.raises(TypeError, match="salt must be bytes"):
        row_digests(data, [1], "a string salt")
    assert row_digests(data, [], new_salt()) == []


def test_the_salt_stays_out_of_the_certificate_and_in_a_private_file(tmp_path):
    salt = new_salt()
    assert len(salt) == 32
    cert = _certificate(tmp_path, salt_hex=salt.hex(), row_digests=row_digests(_data(), [5, 2], salt))
    text = json.dumps(cert) + certificate_markdown(cert)
    assert salt.hex() not in text                                   # so the digests cannot be tested against guesses
    assert cert["salt_sha256"] == hashlib.sha256(salt).hexdigest() and cert["salt_sha256"] in text
    path = write_salt(salt, tmp_path / "out")
    assert path.name == "salt.hex" and path.stat().st_mode & 0o777 == 0o600
    assert read_salt(path) == salt == read_salt(tmp_path / "out")
    # an auditor given the salt checks rows: the removed ones match, another does not
    data = _data()
    assert row_matches(cert, salt, data.x[5], data.y[5], "zelda-private")
    assert row_matches(cert, salt, data.x[2], data.y[2], "cy")
    assert not row_matches(cert, salt, data.x[1], data.y[1], "bo")
    assert not row_matches(cert, salt, data.x[5], data.y[5], "someone-else")   # the group is part of the row
    with pytest.raises(ValueError, match="the salt does not match certificate 'req-1'"):
        row_matches(cert, new_salt(), data.x[5], data.y[5], "zelda-private")
    (tmp_path / "bad.hex").write_text("not hex")
    with pytest.raises(ValueError, match="does not hold a salt in lowercase hex"):
        read_salt(tmp_path / "bad.hex")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_a_certificate_file_with_a_non_finite_number_is_refused(tmp_path, number):
    path = write_certificate(_certificate(tmp_path), tmp_path / "out")[0]
    path.write_text(path.read_text().replace('"wall_seconds": 1.25', f'"wall_seconds": {number}'))
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_certificate(path)
