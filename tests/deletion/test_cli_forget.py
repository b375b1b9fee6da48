"""``expunge forget`` end to end on a user's own model class and a CSV with a user column: it forgets the user,
says in plain words what the evidence showed, certifies the files it wrote, chains requests in the ledger, and
refuses bad input in one line with exit code 2 and nothing written."""
from __future__ import annotations

import json
import sys

import pytest

from expunge.cli import main
from expunge.deletion.ledger import Ledger

from .test_forget import model_hash, user_setup


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    return user_setup(tmp_path_factory.mktemp("cli-users"))


@pytest.fixture
def here(users, monkeypatch, tmp_path):
    """Run from the directory holding usernet.py, as a user would, so --arch usernet:Net imports it; each test its
    own ledger ($EXPUNGE_LEDGER)."""
    monkeypatch.chdir(users["root"])
    monkeypatch.setenv("EXPUNGE_LEDGER", str(tmp_path / "ledger.db"))
    yield tmp_path
    sys.modules.pop("usernet", None)


def forget(model, out, *extra):
    return main(["forget", str(model), "--arch", "usernet:Net", "--data", "train.csv", "--group", "user",
                 "--request", "group:17", "--method", "random_label", "--arg", "epochs=5", "--arg", "lr=0.05",
                 "--out", str(out), *extra])


def test_forget_a_user_end_to_end(users, here, capsys):
    out = here / "deletions" / "r1"
    assert forget(users["model"], out, "--evidence", "tier1", "--oracles", "4", "--test", "test.csv") == 0
    printed = capsys.readouterr().out.splitlines()
    report_md = (out / "report.md").read_text().splitlines()
    assert printed[0] == report_md[0]
    report = json.loads((out / "report.json").read_text())
    # user 17's rows lie apart from every other user's, so no oracle is confident on them; five epochs of random
    # labels bring their accuracy down but leave their confidence above what the 4 oracles show: LiRA still flags
    # them, and the 4 held-out oracles put the model last of 5 (rank p-value 1/5)
    lira = report["evidence"]["numbers"]["lira"]
    assert not lira["indistinguishable"] and lira["lira_tpr_at_1pct"] > lira["band_high"]
    assert report_md[0].startswith("distinguishable: LiRA against 4 oracles flags 75.0% of the 20 removed rows at "
                                   "1% FPR, above the band 0.0%-45.0% that models retrained without them show (rank "
                                   "p-value 1/5, how often a model retrained without the rows would score this high)")
    assert report_md[0].endswith("4 oracles are fewer than the 16 tier-1 evidence needs, so this counts as tier 0.")
    assert report_md[2].startswith("Evidence tier 0")                     # 4 oracles: fewer than tier 1 needs
    s = report["evidence"]["scores"]
    assert s["original"]["forget_acc"] >= 90
    assert abs(s["unlearned"]["forget_acc"] - s["oracle"]["forget_acc"]) < \
        abs(s["original"]["forget_acc"] - s["oracle"]["forget_acc"]) / 2           # forgot: moved toward the oracle
    assert (out / "model.safetensors").read_bytes() != users["model"].read_bytes()
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["input_model"]["sha256"] == model_hash(users["model"])
    assert cert["output_model"]["sha256"] == model_hash(out / "model.safetensors")
    assert cert["evidence"]["headline"] == report_md[0] and cert["removed_rows"] == 20
    (entry,) = Ledger(here / "ledger.db").entries()
    assert entry.certificate == cert and entry.request_id in printed[1]


def test_two_requests_chain_in_the_ledger(users, here, capsys):
    first, second = here / "deletions" / "r1", here / "deletions" / "r2"
    assert forget(users["model"], first) == 0
    assert main(["forget", str(first / "model.safetensors"), "--arch", "usernet:Net", "--data", "train.csv",
                 "--group", "user", "--request", "where:user == 18 or user == 19", "--method", "finetune",
                 "--arg", "epochs=2", "--out", str(second)]) == 0
    c1, c2 = (json.loads((d / "certificate.json").read_text()) for d in (first, second))
    assert c2["previous_request"] == c1["request_id"] and c2["removed_rows"] == 40
    assert c2["input_model"]["sha256"] == c1["output_model"]["sha256"]
    assert "follows " + c1["request_id"] in capsys.readouterr().out
    assert [e.request_id for e in Ledger(here / "ledger.db").entries()] == [c1["request_id"], c2["request_id"]]
    assert main(["ledger", "verify", "--ledger", str(here / "ledger.db"), "--models", str(here / "deletions")]) == 0
    (second / "model.safetensors").write_bytes((first / "model.safetensors").read_bytes())   # a swapped model file
    assert main(["ledger", "verify", "--ledger", str(here / "ledger.db"), "--models", str(here / "deletions")]) == 1


@pytest.mark.parametrize("change, message", [
    ({"--request": "group:99"}, "group 99 does not occur in the group column 'user'"),
    ({"--request": "where:a > 100"}, "selects no rows"),
    ({"--request": "where:user > 0"}, "selects every one of the 240 rows"),
    ({"--request": "user:17"}, "is not understood; expected ids:FILE, group:VALUE, class:K or where:PREDICATE"),
    ({"--method": "nope"}, "unknown method 'nope'"),
    ({"--arg": "epochs"}, "--arg 'epochs': expected name=value"),
    ({"--arg": "epoch=3"}, r"unknown argument\(s\) \['epoch'\]"),
    ({"--arch": "missing_module:Net"}, "cannot import 'missing_module'"),
    ({"--arch-args": "{bad"}, "--arch-args is not valid JSON"),
    ({"--evidence": "tier2"}, "--evidence 'tier2' is not allowed; expected none, oracle, tier1"),
    ({"--evidence": "tier1"}, "--evidence tier1 needs --test FILE"),
    ({"--data": "missing.csv"}, "--data missing.csv: no such file"),
    ({"--data": "test.csv"}, "--data is not the data this model was trained on"),
    ({"--key": "missing.pem"}, "--key missing.pem: no such file"),
    ({"--target": "nothing"}, "no column 'nothing' \\(--target\\)"),
    ({"--ledger": "missing-dir/ledger.db"}, "missing-dir does not exist; create it first or give another path"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(users, here, capsys, change, message):
    args = {"--data": "train.csv", "--request": "group:17", "--method": "random_label", "--arg": "epochs=5",
            "--arch": "usernet:Net", **change}
    argv = ["forget", str(users["model"]), "--group", "user", "--out", str(here / "out")]
    for flag, value in args.items():
        argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message.replace("\\", "") in err.replace("\\", "") \
        or pytest.fail(err)
    assert not (here / "out").exists() and not (here / "ledger.db").exists()


def test_the_default_ledger_works_on_a_fresh_machine(users, here, capsys, monkeypatch):
    home = here / "fresh-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("EXPUNGE_LEDGER")
    assert forget(users["model"], here / "out") == 0
    assert f"Ledger {home / '.expunge' / 'ledger.db'}: entry 1" in capsys.readouterr().out
    assert (here / "out" / "model.safetensors").is_file()
    assert len(Ledger(home / ".expunge" / "ledger.db").entries()) == 1
    assert main(["ledger", "verify"]) == 0


def test_help_says_how_the_class_is_imported(capsys):
    assert main(["forget", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())      # the help's box drawn around lines
    assert "module:Class" in text and "current directory" in text and "path/to/file.py:Class" in text


def test_a_batch_is_served_step_by_step_and_chained(users, here, capsys):
    (here / "batch.txt").write_text("# this week's requests\ngroup:17\nwhere:user == 18\n")
    argv = ["forget", str(users["model"]), "--arch", "usernet:Net", "--data", "train.csv", "--group", "user",
            "--method", "finetune", "--arg", "epochs=2", "--out", str(here / "batch")]
    assert main(argv + ["--batch", str(here / "batch.txt")]) == 0
    summary = json.loads((here / "batch" / "batch.json").read_text())
    assert [s["request"] for s in summary["steps"]] == ["group:17", "where:user == 18"]
    entries = Ledger(here / "ledger.db").entries()
    assert [e.request_id for e in entries] == [s["request_id"] for s in summary["steps"]]
    assert entries[1].certificate["previous_request"] == entries[0].request_id
    side = json.loads((here / "batch" / "02" / "model.json").read_text())["extra"]["deletion"]
    assert len(side["removed_rows"]) == 40
    (here / "overlap.txt").write_text("group:17\nwhere:user <= 17\n")
    capsys.readouterr()
    assert main(argv[:-1] + [str(here / "refused"), "--batch", str(here / "overlap.txt")]) == 2
    assert "the batch's requests overlap" in capsys.readouterr().err and not (here / "refused").exists()
    assert main(argv + ["--request", "group:17", "--batch", str(here / "batch.txt")]) == 2
    assert len(Ledger(here / "ledger.db").entries()) == 2


def test_a_signed_entry_needs_a_valid_key(users, here, capsys):
    pytest.importorskip("cryptography")
    (here / "not-a-key.pem").write_text("hello\n")
    assert forget(users["model"], here / "out", "--key", str(here / "not-a-key.pem")) == 2
    assert "--key: private key" in capsys.readouterr().err and not (here / "out").exists()
    assert main(["ledger", "keygen", str(here / "private.pem"), str(here / "public.pem")]) == 0
    assert forget(users["model"], here / "out", "--key", str(here / "private.pem")) == 0
    (entry,) = Ledger(here / "ledger.db").entries()
    assert entry.signed
    assert main(["ledger", "verify", "--ledger", str(here / "ledger.db"), "--key", str(here / "public.pem")]) == 0
