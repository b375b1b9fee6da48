"""The deletion ledger: the hash chain catches an edited field, a deleted, inserted or moved entry and a replaced
model file (the SQLite file edited directly, as an attacker would); signatures verify only with the right key;
two processes appending at once leave one unforked chain; the command line's exit codes."""
from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

import expunge
from expunge.cli import main
from expunge.deletion.certificate import (build_certificate, canonical_json, file_sha256, new_salt,
                                          write_certificate)
from expunge.deletion.ledger import GENESIS, Ledger, entry_hash, generate_keypair, signed_message


def _serve(root: Path, i: int, previous: Path | None) -> tuple[dict, Path]:
    """What serving request i writes: an output model and its certificate in root/req-i/."""
    out = root / f"req-{i}"
    out.mkdir(parents=True)
    torch.manual_seed(i)
    model = out / "model.safetensors"
    expunge.save_model(torch.nn.Linear(2, 2), model)
    if previous is None:
        previous = root / "original.safetensors"
        expunge.save_model(torch.nn.Linear(2, 2), previous)
    salt = new_salt()
    cert = build_certificate(request_id=f"req-{i}", request=f"group:{i}", row_digests=[f"{i:064x}"],
                             salt_hex=salt.hex(), method="finetune", args={"lr": 0.01}, seed=i, input_model=previous,
                             output_model=model, evidence={"summary": "none", "tier": 0}, wall_seconds=0.5,
                             previous_request=f"req-{i - 1}" if i > 1 else None)
    write_certificate(cert, out)
    return cert, model


def _ledger(root: Path, n: int = 5, key: Path | None = None) -> Ledger:
    ledger = Ledger(root / "ledger.db")
    previous = None
    for i in range(1, n + 1):
        cert, previous = _serve(root, i, previous)
        ledger.append(cert, key=key)
    return ledger


def _tamper(path: Path, *statements: tuple) -> None:
    """Change the SQLite file directly: drop the append-only triggers, then run ``statements``."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER ledger_no_update")
    db.execute("DROP TRIGGER ledger_no_delete")
    for sql, *params in statements:
        db.execute(sql, params)
    db.commit()
    db.close()


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return _ledger(tmp_path)


def test_entries_chain_and_verify(ledger):
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].previous_hash == GENESIS
    for before, after in zip(entries, entries[1:]):
        assert after.previous_hash == before.entry_hash
    for e in entries:
        assert e.entry_hash == entry_hash(e.seq, e.certificate, e.previous_hash)
        assert not e.signed
    assert ledger.verify() == [] and ledger.verify(models=ledger.path.parent) == []
    assert len(ledger.model_paths(ledger.path.parent)) == 5
    assert ledger.get(3).request_id == "req-3" and ledger.get("req-4").seq == 4
    assert ledger.head() == entries[-1].entry_hash
    # a later request links to the one that produced its input
    produced = file_sha256(ledger.path.parent / "req-2" / "model.safetensors")
    assert ledger.find_by_output_hash(produced).request_id == "req-2"
    assert ledger.find_by_output_hash("0" * 64) is None


def test_the_table_refuses_updates_and_deletes(ledger):
    db = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE ledger_entries SET request_id = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM ledger_entries WHERE seq = 1")
    db.close()
    assert ledger.verify() == []


def test_an_edited_field_fails(ledger):
    _tamper(ledger.path, ("UPDATE ledger_entries SET certificate = json_set(certificate, '$.method', 'retrain') "
                          "WHERE seq = 3",))
    problems = ledger.verify()
    assert problems == ["entry 3 (request req-3): its content does not match its hash: the entry was edited"]


def test_an_edit_with_its_hash_recomputed_breaks_the_chain(ledger):
    entry = ledger.get(3)
    forged = dict(entry.certificate, seed=99)
    _tamper(ledger.path, ("UPDATE ledger_entries SET certificate = ?, entry_hash = ? WHERE seq = 3",
                          canonical_json(forged).decode(), entry_hash(3, forged, entry.previous_hash)))
    problems = ledger.verify()
    assert problems[0].startswith("entry 4 (request req-4): its previous hash is not entry 3's hash")


def test_a_deleted_entry_fails(ledger):
    _tamper(ledger.path, ("DELETE FROM ledger_entries WHERE seq = 3",))
    problems = ledger.verify()
    assert problems[0] == "entry 3 is missing: the ledger goes from entry 2 to entry 4 (entries were deleted)"
    assert len(problems) == 2 and "chain is broken" in problems[1]


def test_a_deleted_last_entry_fails(ledger):
    _tamper(ledger.path, ("DELETE FROM ledger_entries WHERE seq = 5",))
    assert ledger.verify() == ["the ledger's head is entry 5 but its last entry is 4: entries at its end were "
                               "deleted"]


def test_reordered_entries_fail(ledger):
    columns = "request_id, output_sha256, certificate, previous_hash, entry_hash, signature, key_id"
    db = sqlite3.connect(ledger.path)
    two, three = (db.execute(f"SELECT {columns} FROM ledger_entries WHERE seq = ?", (s,)).fetchone() for s in (2, 3))
    db.close()
    assign = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
    _tamper(ledger.path, (f"UPDATE ledger_entries SET {assign} WHERE seq = 2", *three),
            (f"UPDATE ledger_entries SET {assign} WHERE seq = 3", *two))
    problems = ledger.verify()
    assert problems[0] == ("entry 2 (request req-3): holds the entry recorded as number 3: entries were reordered, "
                           "inserted or deleted")
    assert any(p.startswith("entry 3 (request req-2): holds the entry recorded as number 2") for p in problems)


def test_swapped_sequence_numbers_fail(ledger):
    _tamper(ledger.path, ("UPDATE ledger_entries SET seq = -2 WHERE seq = 2",),
            ("UPDATE ledger_entries SET seq = 2 WHERE seq = 4",), ("UPDATE ledger_entries SET seq = 4 WHERE seq = -2",))
    assert ledger.verify()[0].startswith("entry 2 (request req-4): holds the entry recorded as number 4")


def test_an_inserted_entry_fails(ledger):
    last = ledger.entries()[-1]
    forged = dict(last.certificate, request_id="req-forged")
    digest = entry_hash(6, forged, last.entry_hash)        # correctly chained, but not appended by the ledger
    _tamper(ledger.path, ("INSERT INTO ledger_entries VALUES (6, 'req-forged', ?, ?, ?, ?, NULL, NULL)",
                          forged["output_model"]["sha256"], canonical_json(forged).decode(), last.entry_hash, digest))
    assert ledger.verify() == ["the ledger's head is entry 5 but its last entry is 6: entries were added outside "
                               "expunge"]
    with pytest.raises(ValueError, match="is damaged"):                 # nothing is chained onto it either
        _serve_and_append(ledger, 7)


def _serve_and_append(ledger: Ledger, i: int) -> None:
    cert, _ = _serve(ledger.path.parent, i, ledger.path.parent / "req-1" / "model.safetensors")
    ledger.append(cert)


def test_a_replaced_model_file_fails(ledger):
    root = ledger.path.parent
    torch.manual_seed(1234)
    expunge.save_model(torch.nn.Linear(2, 2), root / "req-2" / "model.safetensors")
    assert ledger.verify() == []                                        # without --models, models are not read
    problems = ledger.verify(models=root)
    assert problems == [f"entry 2 (request req-2): output model {root / 'req-2' / 'model.safetensors'} does not match "
                        "its certificate (model.json changed): the model file was replaced or modified"]


def test_every_entry_needs_its_model_when_models_are_given(ledger):
    root = ledger.path.parent
    torch.manual_seed(1234)
    expunge.save_model(torch.nn.Linear(2, 2), root / "req-2" / "model.safetensors")
    (root / "req-2" / "certificate.json").unlink()                      # the replaced model hides its certificate
    assert ledger.verify(models=root) == [
        "entry 2 (request req-2): its output model (model.safetensors, sha256 "
        f"{ledger.get(2).certificate['output_model']['sha256'][:16]}...) is not in {root}: it was replaced, "
        "modified or removed"]
    assert set(ledger.model_paths(root)) == {1, 3, 4, 5}


def test_a_certificate_file_naming_another_request_fails(ledger):
    root = ledger.path.parent
    (root / "req-2" / "model.safetensors").write_bytes((root / "req-1" / "model.safetensors").read_bytes())
    path = root / "req-2" / "certificate.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), request_id="req-other")))
    problems = ledger.verify(models=root)
    assert problems[0] == (f"{path} names request 'req-other', which is not in the ledger: a certificate that no "
                           "entry records (edited or forged)")
    assert len(problems) == 2 and problems[1].startswith("entry 2 (request req-2): its output model")


def test_a_genuine_copy_beside_a_replaced_model_does_not_hide_it(ledger):
    root = ledger.path.parent
    shutil.copytree(root / "req-2", root / "a-decoy")                    # sorts before req-2
    torch.manual_seed(98)
    expunge.save_model(torch.nn.Linear(2, 2), root / "req-2" / "model.safetensors")
    problems = ledger.verify(models=root)
    assert len(problems) == 1 and problems[0].startswith(
        f"entry 2 (request req-2): output model {root / 'req-2' / 'model.safetensors'} does not match")


def test_models_kept_directly_in_a_directory_are_matched_by_content(ledger):
    root, flat = ledger.path.parent, ledger.path.parent / "flat"
    flat.mkdir()
    for i in range(1, 6):                                               # every output is named model.safetensors
        for suffix in (".safetensors", ".json"):
            shutil.copy(root / f"req-{i}" / f"model{suffix}", flat / f"r{i}{suffix}")
    shutil.copy(root / "original.safetensors", flat)                    # the first input model may be there too
    shutil.copy(root / "original.json", flat)
    assert ledger.verify(models=flat) == []
    assert ledger.model_paths(flat) == {i: flat / f"r{i}.safetensors" for i in range(1, 6)}
    torch.manual_seed(77)
    expunge.save_model(torch.nn.Linear(2, 2), flat / "r3.safetensors")
    problems = ledger.verify(models=flat)
    assert len(problems) == 2
    assert problems[0].startswith("entry 3 (request req-3): its output model (model.safetensors, sha256 ")
    assert problems[1] == (f"{flat / 'r3.safetensors'} is no model the ledger records (no entry's output or input): "
                           "a replaced or modified model")
    # a directory holding one output model: every other entry's is missing, and that one is not a false alarm
    one = root / "one"
    one.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(root / "req-5" / f"model{suffix}", one)
    problems = ledger.verify(models=one)
    assert [p.split(":")[0] for p in problems] == [f"entry {i} (request req-{i})" for i in range(1, 5)]
    assert all("is not in" in p for p in problems)


def test_an_edited_certificate_file_beside_its_model_fails(ledger):
    path = ledger.path.parent / "req-4" / "certificate.json"
    cert = json.loads(path.read_text())
    path.write_text(json.dumps(dict(cert, seed=7)))
    assert ledger.verify(models=ledger.path.parent) == [
        f"entry 4 (request req-4): {path} differs from the ledger's certificate"]


def test_signed_ledger_verifies_only_with_its_public_key(tmp_path):
    pytest.importorskip("cryptography")
    keys = tmp_path / "keys"
    keys.mkdir()
    generate_keypair(keys / "a.pem", keys / "a.pub")
    generate_keypair(keys / "b.pem", keys / "b.pub")
    assert (keys / "a.pem").stat().st_mode & 0o077 == 0                 # the private key is its owner's only
    ledger = _ledger(tmp_path / "signed", n=3, key=keys / "a.pem")
    assert all(e.signed for e in ledger.entries())
    assert ledger.verify(public_key=keys / "a.pub") == []
    assert ledger.verify(public_key=keys / "a.pem") == []               # a private key gives its public key
    wrong = ledger.verify(public_key=keys / "b.pub")
    assert len(wrong) == 3 and "its signature does not verify with the given public key" in wrong[0]
    unkeyed = ledger.verify()
    assert len(unkeyed) == 3 and "is signed" in unkeyed[0] and "--key" in unkeyed[0]
    # an unsigned ledger fails when a key is given
    assert "is not signed, but a public key was given" in _ledger(tmp_path / "plain", n=1).verify(
        public_key=keys / "a.pub")[0]
    # rewriting an entry and its hash cannot forge its signature
    entry = ledger.get(3)
    forged = dict(entry.certificate, method="retrain")
    _tamper(ledger.path, ("UPDATE ledger_entries SET certificate = ?, entry_hash = ? WHERE seq = 3",
                          canonical_json(forged).decode(), entry_hash(3, forged, entry.previous_hash)))
    problems = ledger.verify(public_key=keys / "a.pub")
    assert problems[0].startswith("entry 3 (request req-3): its signature does not verify")


def test_key_problems_are_one_line_value_errors(tmp_path, monkeypatch):
    ledger = _ledger(tmp_path, n=1)
    (tmp_path / "junk.pem").write_text("not a key")
    cert, _ = _serve(tmp_path / "more", 2, None)
    with pytest.raises(ValueError, match="not a PEM key file"):
        ledger.append(cert, key=tmp_path / "junk.pem")
    with pytest.raises(ValueError, match="private key .* not found"):
        ledger.append(cert, key=tmp_path / "missing.pem")
    assert len(ledger.entries()) == 1                                   # nothing appended
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    with pytest.raises(ValueError, match=r"needs the cryptography package \(pip install cryptography\)"):
        ledger.verify(public_key=tmp_path / "junk.pem")


def test_bad_ledgers_and_duplicates_are_refused(tmp_path, ledger):
    cert = ledger.get(2).certificate
    with pytest.raises(ValueError, match="request 'req-2' is already in ledger"):
        ledger.append(cert)
    (tmp_path / "text.db").write_text("hello")
    with pytest.raises(ValueError, match="is not a SQLite database"):
        Ledger(tmp_path / "text.db").entries()
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE runs (x)")
    other.close()
    with pytest.raises(ValueError, match="not an expunge ledger"):
        Ledger(tmp_path / "other.db").append(cert)
    with pytest.raises(ValueError, match="no ledger at"):
        Ledger(tmp_path / "missing.db").verify()
    with pytest.raises(ValueError, match="models directory .* not found"):
        ledger.verify(models=tmp_path / "nowhere")
    assert Ledger(tmp_path / "missing.db").entries() == [] and not (tmp_path / "missing.db").exists()


def _append_fifty(path: str, template: dict, tag: str, go) -> None:
    go.wait(60)                                        # both start appending together
    ledger = Ledger(path)
    for i in range(50):
        ledger.append(dict(template, request_id=f"{tag}-{i}"))


def test_two_processes_appending_at_once_leave_one_chain(tmp_path):
    import multiprocessing

    # fork: the children start at once, without importing torch again
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    cert, _ = _serve(tmp_path, 1, None)
    db, go = str(tmp_path / "shared.db"), ctx.Event()
    procs = [ctx.Process(target=_append_fifty, args=(db, cert, tag, go)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    ledger = Ledger(db)
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(1, 101))
    assert {e.request_id for e in entries} == {f"{t}-{i}" for t in "ab" for i in range(50)}
    assert ledger.verify() == []


def test_cli_ledger_commands(tmp_path, ledger, capsys):
    db, root = str(ledger.path), str(ledger.path.parent)
    assert main(["ledger", "verify", "--ledger", db, "--models", root]) == 0
    assert capsys.readouterr().out.startswith("ledger ok: 5 entries; 5 output models checked (head ")
    assert main(["ledger", "list", "--ledger", db]) == 0
    listed = capsys.readouterr().out
    assert "req-5" in listed and "group:3" in listed
    assert main(["ledger", "show", "req-2", "--ledger", db]) == 0
    assert "# Deletion certificate `req-2`" in capsys.readouterr().out
    assert main(["ledger", "show", "2", "--ledger", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["request_id"] == "req-2"
    _tamper(ledger.path, ("DELETE FROM ledger_entries WHERE seq = 2",))
    assert main(["ledger", "verify", "--ledger", db]) == 1
    out = capsys.readouterr().out
    assert out == ("ledger verification failed: entry 2 is missing: the ledger goes from entry 1 to entry 3 "
                   "(entries were deleted) (2 problems; --all lists them)\n")
    assert main(["ledger", "verify", "--ledger", db, "--all"]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_cli_bad_input_exits_2_in_one_line(tmp_path, ledger, capsys):
    db = str(ledger.path)
    (tmp_path / "junk.pub").write_text("junk")
    for args, message in ((["verify", "--ledger", str(tmp_path / "none.db")], "no ledger at"),
                          (["verify", "--ledger", db, "--key", str(tmp_path / "junk.pub")], "not a PEM key file"),
                          (["verify", "--ledger", db, "--models", str(tmp_path / "nowhere")], "models directory"),
                          (["show", "req-9", "--ledger", db], "no entry 'req-9'")):
        assert main(["ledger", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_keygen_signs_and_verifies(tmp_path, capsys):
    pytest.importorskip("cryptography")
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    assert main(["ledger", "keygen", str(priv), str(pub)]) == 0
    assert "key id" in capsys.readouterr().out
    assert main(["ledger", "keygen", str(priv), str(tmp_path / "other.pub")]) == 2       # never replaces a key
    capsys.readouterr()
    ledger = _ledger(tmp_path / "signed", n=2, key=priv)
    assert main(["ledger", "verify", "--ledger", str(ledger.path), "--key", str(pub)]) == 0
    assert "ledger ok: 2 entries; signatures verified" in capsys.readouterr().out
    assert main(["ledger", "verify", "--ledger", str(ledger.path)]) == 1
    assert "is signed" in capsys.readouterr().out


def _stored(ledger: Ledger, seq: int) -> str:
    db = sqlite3.connect(ledger.path)
    (text,) = db.execute("SELECT certificate FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
    db.close()
    return text


@pytest.mark.parametrize("edit", ['"wall_seconds":1e999', '"wall_seconds":NaN', '"wall_seconds":-Infinity'])
def test_a_non_finite_number_is_reported_not_raised(ledger, capsys, edit):
    text = _stored(ledger, 2)
    assert '"wall_seconds":0.5' in text
    _tamper(ledger.path, ("UPDATE ledger_entries SET certificate = ? WHERE seq = 2",
                          text.replace('"wall_seconds":0.5', edit)))
    problems = ledger.verify()
    assert len(problems) == 1 and problems[0].startswith("entry 2 (request req-2): its certificate is not valid JSON")
    assert problems[0].endswith(": edited")
    assert main(["ledger", "verify", "--ledger", str(ledger.path)]) == 1
    assert capsys.readouterr().out.startswith("ledger verification failed: entry 2 (request req-2): its certificate")


def test_an_edited_format_row_is_a_verify_problem(ledger, capsys):
    _tamper(ledger.path, ("UPDATE ledger_meta SET value = 'expunge-ledger/0' WHERE key = 'format'",))
    assert ledger.verify() == ["the ledger's format is recorded as 'expunge-ledger/0', not 'expunge-ledger/1': its "
                               "metadata was edited (or it was written by another version of expunge)"]
    assert main(["ledger", "verify", "--ledger", str(ledger.path)]) == 1
    assert "its metadata was edited" in capsys.readouterr().out


def test_a_certificate_not_stored_canonically_fails(ledger):
    text = _stored(ledger, 2)
    # a repeated key: a reader taking the first "method" sees "retrain", the hash covers the last one
    _tamper(ledger.path, ("UPDATE ledger_entries SET certificate = ? WHERE seq = 2", '{"method":"retrain",' + text[1:]))
    assert ledger.verify() == ["entry 2 (request req-2): its certificate is not stored as canonical JSON (a repeated "
                               "key, spacing or key order): edited"]


def test_a_truncated_signed_ledger_fails_against_a_kept_head(tmp_path, capsys):
    pytest.importorskip("cryptography")
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    ledger = _ledger(tmp_path / "signed", n=3, key=tmp_path / "k.pem")
    db, pub = str(ledger.path), str(tmp_path / "k.pub")
    assert main(["ledger", "verify", "--ledger", db, "--key", pub]) == 0
    kept = capsys.readouterr().out.strip().rsplit("(head ", 1)[1].rstrip(")")     # what the owner keeps
    assert kept == ledger.head()
    assert main(["ledger", "verify", "--ledger", db, "--key", pub, "--head", kept]) == 0
    assert "the kept head is in it" in capsys.readouterr().out
    two = ledger.entries()[1]
    _tamper(ledger.path, ("DELETE FROM ledger_entries WHERE seq = 3",),
            ("UPDATE ledger_meta SET value = '2' WHERE key = 'head_seq'",),
            ("UPDATE ledger_meta SET value = ? WHERE key = 'head_hash'", two.entry_hash))
    assert ledger.verify(public_key=tmp_path / "k.pub") == []          # the chain and the signatures cannot tell
    assert ledger.verify(public_key=tmp_path / "k.pub", head=kept) == [
        f"the ledger no longer holds the head {kept[:16]}... kept elsewhere: entries at its end were deleted or the "
        "ledger was rewritten"]
    assert ledger.verify(expect_entries=3, public_key=tmp_path / "k.pub") == ["the ledger holds 2 entries, fewer than the 3 expected: entries were "
                                               "deleted"]
    assert ledger.verify(head=two.entry_hash, expect_entries=2, public_key=tmp_path / "k.pub") == []  # an older head
    assert main(["ledger", "verify", "--ledger", db, "--key", pub, "--head", kept]) == 1
    assert "no longer holds the head" in capsys.readouterr().out
    assert main(["ledger", "verify", "--ledger", db, "--expect-entries", "3", "--key", pub]) == 1
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", db, "--head", "abc"]) == 2
    assert "head must be a ledger head hash" in capsys.readouterr().err


def test_signatures_cover_a_domain_prefix(tmp_path):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    ledger = _ledger(tmp_path / "signed", n=1, key=tmp_path / "k.pem")
    entry = ledger.get(1)
    public = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes())
    assert signed_message(entry.entry_hash) == b"expunge-ledger/1\n" + bytes.fromhex(entry.entry_hash)
    public.verify(bytes.fromhex(entry.signature), b"expunge-ledger/1\n" + bytes.fromhex(entry.entry_hash))
    # a signature over the bare hash (what a key may sign elsewhere) is not an entry signature
    private = serialization.load_pem_private_key((tmp_path / "k.pem").read_bytes(), password=None)
    _tamper(ledger.path, ("UPDATE ledger_entries SET signature = ? WHERE seq = 1",
                          private.sign(bytes.fromhex(entry.entry_hash)).hex()))
    assert ledger.verify(public_key=tmp_path / "k.pub")[0].startswith("entry 1 (request req-1): its signature does "
                                                                      "not verify")


def test_an_entry_inserted_before_the_first_fails(ledger):
    forged = dict(ledger.get(1).certificate, request_id="forged")
    _tamper(ledger.path, ("INSERT INTO ledger_entries VALUES (0, 'forged', ?, ?, ?, ?, NULL, NULL)",
                          forged["output_model"]["sha256"], canonical_json(forged).decode(), GENESIS,
                          entry_hash(0, forged, GENESIS)))
    assert ledger.verify() == ["entry 0 (request forged): its number does not follow the entry before it: an entry "
                               "was inserted before entry 1"]


def test_an_entry_must_follow_an_earlier_request_whose_output_it_starts_from(tmp_path):
    ledger = _ledger(tmp_path, n=2)
    # req-3 claims to follow req-2 but starts from req-1's output
    cert, _ = _serve(tmp_path, 3, tmp_path / "req-1" / "model.safetensors")
    ledger.append(cert)
    assert ledger.verify() == ["entry 3 (request req-3): follows request 'req-2', but that request's output model is "
                               "not this entry's input model"]
    # req-5 claims to follow req-4, which the ledger does not hold
    cert, _ = _serve(tmp_path, 5, tmp_path / "req-3" / "model.safetensors")
    ledger.append(cert)
    assert ledger.verify()[1] == "entry 4 (request req-5): follows request 'req-4', which is no earlier entry of the ledger"
