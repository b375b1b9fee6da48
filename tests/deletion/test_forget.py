"""Serving one deletion request on a model file: the unlearned model forgets, the report words the evidence, the
certificate's hashes are the files', requests chain in the ledger, and bad input is refused before any work with
nothing written."""
from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import expunge
from expunge.data import load_csv
from expunge.deletion import forget as forget_module
from expunge.deletion.forget import DataOptions, load_data, serve
from expunge.deletion.report import headline, lira_band, wilson_upper

USERNET = textwrap.dedent('''\
    from torch import nn


    class Net(nn.Module):
        def __init__(self, d_in=4, hidden=64, classes=3):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                      nn.Linear(hidden, classes))

        def forward(self, x):
            return self.body(x)
''')
FORGET_ARGS = {"epochs": 5, "lr": 0.05}          # random_label: forgets user 17 here (forget accuracy 95% -> 10%)


def write_users(path: Path, *, seed: int = 0, n_users: int = 12, per_user: int = 20, first_user: int = 10,
                drop_user: int | None = None) -> None:
    """A CSV of users' rows (features a-d, a user column, a label from a fixed rule); user 17's rows lie apart
    (feature d shifted) and all carry label 2, so a model that trained on them knows them and its oracle does not."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    user = np.repeat(np.arange(first_user, first_user + n_users), per_user)
    x[user == 17, 3] += 3.0
    y[user == 17] = 2
    keep = user != drop_user
    lines = ["a,b,c,d,user,label"] + [",".join(f"{v:.4f}" for v in x[i]) + f",{user[i]},{y[i]}"
                                      for i in np.flatnonzero(keep)]
    path.write_text("\n".join(lines) + "\n")


def user_setup(root: Path) -> dict[str, Path]:
    """The user's model class in ``root/usernet.py``, its training and test CSVs, and the trained model saved with
    expunge.save_model (safetensors + sidecar recording its recipe and data fingerprint)."""
    import importlib.util

    root.mkdir(parents=True, exist_ok=True)
    (root / "usernet.py").write_text(USERNET)
    write_users(root / "train.csv")
    write_users(root / "test.csv", seed=1, n_users=5, first_user=100)
    spec = importlib.util.spec_from_file_location("usernet_for_tests", root / "usernet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = load_csv(root / "train.csv", target="label", groups="user")
    model = expunge.train(module.Net(), data, epochs=30, lr=0.05, batch_size=32, seed=0)
    expunge.save_model(model, root / "model.safetensors", extra={"arch": {"class": "usernet:Net", "kwargs": {}}})
    return {"root": root, "model": root / "model.safetensors", "train": root / "train.csv",
            "test": root / "test.csv", "arch": f"{root / 'usernet.py'}:Net"}


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    return user_setup(tmp_path_factory.mktemp("users"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_hash(path: Path) -> str:
    """What a certificate records for a .safetensors model: SHA-256 over the sha256sum lines of it and its sidecar."""
    files = {p.name: sha256_of(p) for p in (path, path.with_suffix(".json"))}
    return hashlib.sha256("".join(f"{files[n]}  {n}\n" for n in sorted(files)).encode()).hexdigest()


def serve_users(users, out, request="group:17", **kw):
    kw.setdefault("method", "random_label")
    kw.setdefault("args", dict(FORGET_ARGS))
    return serve(kw.pop("model", users["model"]), kw.pop("data", load_data(users["train"], DataOptions(group="user"))),
                 request, out_dir=out, arch=kw.pop("arch", users["arch"]), **kw)


def test_a_group_is_forgotten_reported_and_certified(users, tmp_path):
    ledger = tmp_path / "ledger.db"
    r = serve_users(users, tmp_path / "out", evidence="oracle", ledger=ledger)
    assert sorted(p.name for p in r.out_dir.iterdir()) == ["certificate.json", "certificate.md", "model.json",
                                                          "model.safetensors", "report.json", "report.md", "salt.hex"]
    assert sha256_of(r.model_path) != sha256_of(users["model"])
    report = json.loads(r.report_json.read_text())
    first = r.report_path.read_text().splitlines()[0]
    assert first == report["headline"] == r.headline
    assert first.startswith("compared with one model retrained without the rows (--evidence oracle): Avg. Gap")
    s = report["evidence"]["scores"]
    assert s["original"]["forget_acc"] >= 90 and s["oracle"]["forget_acc"] <= 20
    assert abs(s["unlearned"]["forget_acc"] - s["oracle"]["forget_acc"]) < 20    # moved toward the oracle's
    cert = json.loads(r.certificate_json.read_text())
    assert cert["input_model"]["sha256"] == model_hash(users["model"])
    assert cert["output_model"]["sha256"] == model_hash(r.model_path)
    assert cert["output_model"]["files"]["model.safetensors"] == sha256_of(r.model_path)
    assert cert["request"] == "group:17" and cert["removed_rows"] == 20 and cert["method"] == "random_label"
    assert cert["args"]["epochs"] == 5 and cert["exact"] is False and cert["previous_request"] is None
    assert cert["evidence"]["headline"] == r.headline and cert["evidence"]["kind"] == "oracle"
    rows = np.flatnonzero(load_csv(users["train"], target="label", groups="user").groups == 17)
    from expunge.deletion.certificate import read_salt

    salt = read_salt(r.out_dir)                       # kept private beside the certificate, which holds its hash
    data = load_data(users["train"], DataOptions(group="user")).dataset
    x, y = data.x[rows[0]].numpy(), int(data.y[rows[0]])
    from expunge.deletion.certificate import row_bytes

    assert hashlib.sha256(salt + row_bytes(x, y, 17)).hexdigest() in cert["row_digests"]
    from expunge.deletion.ledger import Ledger

    (entry,) = Ledger(ledger).entries()
    assert entry.request_id == r.request_id == cert["request_id"] and entry.certificate == cert
    side = json.loads(r.model_path.with_suffix(".json").read_text())
    assert side["extra"]["deletion"]["input_model_sha256"] == cert["input_model"]["sha256"]
    assert side["extra"]["deletion"]["removed_rows"] == rows.tolist()
    assert side["extra"]["arch"] == {"class": users["arch"], "kwargs": {}}    # what --arch named


def test_requests_chain_in_the_ledger_and_rows_are_forgotten_once(users, tmp_path):
    ledger = tmp_path / "ledger.db"
    first = serve_users(users, tmp_path / "r1", ledger=ledger)
    second = serve_users(users, tmp_path / "r2", request="group:18", model=first.model_path, ledger=ledger)
    assert second.previous_request == first.request_id
    from expunge.deletion.ledger import Ledger

    entries = Ledger(ledger).entries()
    assert [e.request_id for e in entries] == [first.request_id, second.request_id]
    assert entries[1].certificate["previous_request"] == first.request_id
    assert entries[1].certificate["input_model"]["sha256"] == entries[0].certificate["output_model"]["sha256"]
    assert Ledger(ledger).verify(models=tmp_path) == []
    side = json.loads(second.model_path.with_suffix(".json").read_text())["extra"]["deletion"]
    assert len(side["removed_rows"]) == 40                      # both users, against the full training file
    with pytest.raises(ValueError, match="an earlier request already removed"):
        serve_users(users, tmp_path / "r3", request="group:17", model=second.model_path, ledger=ledger)
    # the training file with user 17's rows deleted is accepted as the data of the second step, too
    write_users(tmp_path / "without17.csv", drop_user=17)
    third = serve_users(users, tmp_path / "r3", request="group:19", model=first.model_path, ledger=None,
                        data=load_data(tmp_path / "without17.csv", DataOptions(group="user")))
    assert "without the rows earlier requests removed" in json.loads(third.report_json.read_text())["data_check"]
    assert not (tmp_path / "r3" / "ledger.db").exists() and len(Ledger(ledger).entries()) == 2
    fourth = serve_users(users, tmp_path / "r4", request="group:20", model=third.model_path, ledger=None,
                         data=load_data(tmp_path / "without17.csv", DataOptions(group="user")))
    assert len(json.loads(fourth.model_path.with_suffix(".json").read_text())["extra"]["deletion"]
               ["removed_rows"]) == 40                     # user 19's and user 20's rows, in the file without user 17
    with pytest.raises(ValueError, match="original training set, but its earlier requests were served on a copy"):
        serve_users(users, tmp_path / "r5", request="group:21", model=fourth.model_path, ledger=None)


def test_nothing_is_written_when_a_step_fails(users, tmp_path, monkeypatch):
    from expunge.deletion import certificate

    def broken(cert, out_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(certificate, "write_certificate", broken)
    with pytest.raises(OSError):
        serve_users(users, tmp_path / "deletions" / "new" / "out", ledger=tmp_path / "ledger.db")
    assert list(tmp_path.iterdir()) == []          # not even the directories above --out


def test_a_failed_ledger_append_removes_the_output(users, tmp_path, monkeypatch):
    from expunge.deletion import ledger

    def broken(self, cert, key=None):
        raise ValueError("ledger is damaged")

    monkeypatch.setattr(ledger.Ledger, "append", broken)
    with pytest.raises(ValueError, match="damaged"):
        serve_users(users, tmp_path / "out", ledger=tmp_path / "ledger.db")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def bad(users, tmp_path, match, **kw):
    def work(*a, **k):
        raise AssertionError("work started before the inputs were checked")

    import expunge.api

    mp = pytest.MonkeyPatch()
    mp.setattr(expunge.api, "unlearn", work)
    kw.setdefault("ledger", tmp_path / "ledger.db")
    try:
        with pytest.raises((ValueError, TypeError), match=match) as e:
            serve_users(users, tmp_path / "refused", **kw)
    finally:
        mp.undo()
    assert "\n" not in str(e.value)
    assert not (tmp_path / "refused").exists() and not (tmp_path / "ledger.db").exists()


def test_bad_inputs_are_refused_before_any_work(users, tmp_path):
    bad(users, tmp_path, "unknown method 'nope'", method="nope")
    bad(users, tmp_path, r"method 'random_label': unknown argument\(s\) \['epoch'\]", args={"epoch": 3})
    bad(users, tmp_path, "supports language tasks; the data is classification", method="npo", args={})
    bad(users, tmp_path, "needs a special original", method="sisa", args={})
    bad(users, tmp_path, "--evidence tier1 needs --test FILE", evidence="tier1")
    bad(users, tmp_path, "--evidence 'all' is not allowed", evidence="all")
    bad(users, tmp_path, "--oracles must be an integer >= 3", evidence="tier1", oracles=2, test=users["test"])
    bad(users, tmp_path, "group 99 does not occur in the group column", request="group:99")
    bad(users, tmp_path, "selects no rows", request="where:d > 100")
    bad(users, tmp_path, "the group column 'user' holds integers", request="group:x")
    bad(users, tmp_path, "budget has unknown key 'epochs'", method="auto", args={"epochs": 3})
    bad(users, tmp_path, "cannot import 'nonexistent_module'", arch="nonexistent_module:Net")
    bad(users, tmp_path, "has no 'Other'", arch=f"{users['root'] / 'usernet.py'}:Other")
    bad(users, tmp_path, r"do not fit --arch .* built with \{'hidden': 8\}", arch_args={"hidden": 8})
    bad(users, tmp_path, "sidecar names no built-in architecture; give the class", arch=None)
    other = tmp_path / "other.csv"
    write_users(other, seed=5)
    bad(users, tmp_path, "--data is not the data this model was trained on",
        data=load_data(other, DataOptions(group="user")))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        serve_users(users, tmp_path / "out", ledger=None)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_cheap_checks_come_before_the_model_and_the_data_are_read(users, tmp_path, monkeypatch):
    def reading(*a, **k):
        raise AssertionError("the model or the data was read before the cheap checks")

    monkeypatch.setattr(forget_module, "load_original", reading)
    monkeypatch.setattr(forget_module, "load_data", reading)
    bad(users, tmp_path, "unknown method 'nope'", method="nope")
    bad(users, tmp_path, r"unknown argument\(s\) \['epoch'\]", args={"epoch": 3})
    bad(users, tmp_path, "budget has unknown key 'epochs'", method="auto", args={"epochs": 3})
    bad(users, tmp_path, "--evidence tier1 needs --test FILE", evidence="tier1", data=users["train"])
    bad(users, tmp_path, "--recipe .*: no such file", recipe=tmp_path / "missing.yaml", data=users["train"])
    bad(users, tmp_path, "directory .*nodir does not exist", ledger=tmp_path / "nodir" / "l.db", data=users["train"])


def test_tier1_needs_a_hundred_test_rows(users, tmp_path):
    write_users(tmp_path / "small.csv", seed=2, n_users=4, first_user=100)        # 80 rows
    bad(users, tmp_path, "--evidence tier1 needs at least 100 --test rows .* the test data has 80", evidence="tier1",
        test=tmp_path / "small.csv", test_options=DataOptions(group="user"))


def test_a_ledger_that_append_would_refuse_is_refused_before_any_work(users, tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    bad(users, tmp_path, "is a SQLite database but not an expunge ledger", ledger=other)
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE ledger_entries (seq INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO ledger_meta VALUES ('format', 'expunge-ledger/0')")
    bad(users, tmp_path, "has format 'expunge-ledger/0'", ledger=old)
    garbled = tmp_path / "garbled.db"
    garbled.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    bad(users, tmp_path, "cannot be read as a SQLite database", ledger=garbled)
    ledger = tmp_path / "ledger-in-use.db"
    serve_users(users, tmp_path / "first", ledger=ledger)
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE ledger_meta SET value = '5' WHERE key = 'head_seq'")
    before = ledger.read_bytes()
    bad(users, tmp_path, r"ledger-in-use.db is damaged \(the ledger's head is entry 5 but its last entry is 1",
        ledger=ledger)
    assert ledger.read_bytes() == before                     # checked without writing


def test_the_default_ledger_directory_is_made_on_a_fresh_machine(users, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("EXPUNGE_LEDGER", raising=False)
    bad(users, tmp_path, "unknown method", method="nope", ledger=forget_module.default_ledger())
    assert not (home / ".expunge").exists()                  # nothing made for a refused request
    r = serve_users(users, tmp_path / "out", ledger=forget_module.default_ledger())
    assert r.entry is not None and (home / ".expunge" / "ledger.db").is_file()
    assert (home / ".expunge").stat().st_mode & 0o777 == 0o700
    bad(users, tmp_path, "directory .*elsewhere does not exist; create it first", ledger=home / "elsewhere" / "l.db")
    assert not (home / "elsewhere").exists()


def test_a_class_in_the_current_directory_never_shadows_an_installed_module(tmp_path, monkeypatch):
    import sys

    installed, here = tmp_path / "site", tmp_path / "cwd"
    for folder, size in ((installed, 2), (here, 3)):
        folder.mkdir()
        (folder / "shadowed_net.py").write_text(f"from torch import nn\n\n\nclass Net(nn.Linear):\n"
                                                 f"    def __init__(self):\n        super().__init__({size}, 1)\n")
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.chdir(here)
    monkeypatch.delitem(sys.modules, "shadowed_net", raising=False)
    path_before = list(sys.path)
    try:
        cls = forget_module.import_class("shadowed_net:Net")
    finally:
        sys.modules.pop("shadowed_net", None)
    assert cls().in_features == 2 and sys.path == path_before
    (here / "only_here_net.py").write_text("from torch import nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    try:
        assert forget_module.import_class("only_here_net:Net").__module__ == "only_here_net"
    finally:
        sys.modules.pop("only_here_net", None)
    assert sys.path == path_before


def test_model_files_are_checked_first(users, tmp_path):
    pickle = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pickle)
    bad(users, tmp_path, "pickle checkpoint; expunge never unpickles", model=pickle)
    bad(users, tmp_path, "no such file", model=tmp_path / "missing.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(users["model"].read_bytes()[:-8])
    (tmp_path / "broken.json").write_text(users["model"].with_suffix(".json").read_text())
    bad(users, tmp_path, "not a valid safetensors file", model=broken)


def test_a_model_without_its_recipe_needs_one_for_oracles(users, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("usernet_recipe", users["root"] / "usernet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bare = tmp_path / "bare.safetensors"
    expunge.save_model(module.Net(), bare)          # no recipe, no data fingerprint
    bad(users, tmp_path, "--evidence oracle retrains oracles with the recipe that trained the model, and the sidecar "
                         "records none", model=bare, evidence="oracle")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {epochs: 3, lr: 0.05, batch_size: 32}\n")
    r = serve_users(users, tmp_path / "out", model=bare, evidence="oracle", recipe=recipe, ledger=None)
    assert "could not be checked" in json.loads(r.report_json.read_text())["data_check"]
    recipe.write_text("epochs: 3\nlrr: 0.1\n")
    bad(users, tmp_path, r"--recipe .*unknown training setting\(s\) \['lrr'\]", model=bare, evidence="oracle",
        recipe=recipe)


def test_a_built_in_model_on_npz_data_with_tier1_evidence(tmp_path):
    write_users(tmp_path / "train.csv")
    data = load_csv(tmp_path / "train.csv", target="label", groups="user")
    np.savez(tmp_path / "train.npz", x=data.x.numpy(), y=data.y.numpy(), user=data.groups)
    test = load_csv(tmp_path / "train.csv", target="label")
    write_users(tmp_path / "test.csv", seed=3, n_users=5, first_user=100)
    test = load_csv(tmp_path / "test.csv", target="label", groups="user")
    np.savez(tmp_path / "test.npz", x=test.x.numpy(), y=test.y.numpy(), user=test.groups)
    model = expunge.train(expunge.model("mlp", data, hidden=[64, 64]), data, epochs=30, lr=0.05, batch_size=32)
    expunge.save_model(model, tmp_path / "mlp.safetensors")
    r = serve(tmp_path / "mlp.safetensors", tmp_path / "train.npz", "group:17", method="retrain", evidence="tier1",
              oracles=4, test=tmp_path / "test.npz", out_dir=tmp_path / "out",
              data_options=DataOptions(group="user"))
    lira = r.evidence["numbers"]["lira"]
    assert r.headline.startswith("indistinguishable from retraining on this test at 1% FPR (LiRA against 4 oracles")
    assert lira["indistinguishable"] and lira["n_forget"] == 20 and lira["n_test"] == 100
    assert "4 oracles are fewer than the 16 tier-1 evidence needs" in r.headline and r.evidence["tier"] == 0
    assert r.evidence["numbers"]["lira_original"]["indistinguishable"] is False   # the original is caught
    assert expunge.load_model(r.model_path)(data.x[:2]).shape == (2, 3)


def test_a_sisa_ensemble_is_served_exactly(users, tmp_path):
    from expunge.exact.sisa import SISA

    data = load_data(users["train"], DataOptions(group="user"))
    ensemble = SISA(shards=3, slices=1, epochs=5, seed=0).fit(expunge.model("mlp", data.dataset, hidden=[16]),
                                                              data.dataset)
    with pytest.raises(ValueError, match="served exactly: use --method sisa or auto"):
        serve(ensemble, data, "group:17", method="finetune", out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="served exactly: the result is, by construction"):
        serve(ensemble, data, "group:17", method="sisa", evidence="oracle", out_dir=tmp_path / "x")
    r = serve(ensemble, data, "group:17", method="sisa", out_dir=tmp_path / "out", ledger=tmp_path / "l.db")
    cert = json.loads(r.certificate_json.read_text())
    assert r.exact and cert["exact"] is True and cert["method"] == "sisa"
    assert r.headline.startswith("exact: the removed rows were taken out of the SISA ensemble")
    assert r.report_path.read_text().splitlines()[2].startswith("Exact deletion (SISA): the model is, by construction")
    report = json.loads(r.report_json.read_text())
    assert report["exact"]["retrained_shards"] and report["evidence"]["scores"]["unlearned"]["forget_acc"] >= 0
    chosen = serve(ensemble, data, "group:18", method="auto", out_dir=tmp_path / "auto")
    choice = json.loads(chosen.certificate_json.read_text())["evidence"]["method_choice"]
    assert chosen.method == "sisa" and choice["chosen_by"] == "auto" and choice["chosen"] == "sisa"


def test_auto_records_its_choice(users, tmp_path):
    r = serve_users(users, tmp_path / "out", method="auto", args={"methods": ["finetune", "random_label"],
                                                                  "trials": 1}, ledger=None)
    report = json.loads(r.report_json.read_text())
    assert r.method in ("finetune", "random_label", "retrain") and report["choice"]
    cert = json.loads(r.certificate_json.read_text())
    assert cert["method"] == r.method
    choice = cert["evidence"]["method_choice"]
    assert choice["chosen_by"] == "auto" and choice["chosen"] == r.method == report["choice"]["chosen"]
    assert choice["reason"] == report["choice"]["reason"] and choice["tuning_set"]["disjoint_from_request"] is True
    assert "chosen_by: auto" in r.certificate_md.read_text()


def test_wilson_bound_and_the_lira_band():
    assert wilson_upper(0.0, 20) == pytest.approx(1.959963984540054 ** 2 / (20 + 1.959963984540054 ** 2))
    assert wilson_upper(0.5, 10_000) == pytest.approx(0.5 + 1.96 * 0.005, abs=2e-4)
    rng = np.random.default_rng(0)
    oracle_phi = rng.normal(0, 1, size=(8, 400))
    member = np.r_[np.ones(100, bool), np.zeros(300, bool)]
    like_an_oracle = rng.normal(0, 1, size=400)
    assert lira_band(like_an_oracle, oracle_phi, member)["indistinguishable"]
    remembers = like_an_oracle + 4.0 * member                 # the removed rows' confidence stays high
    band = lira_band(remembers, oracle_phi, member)
    assert not band["indistinguishable"] and band["lira_tpr_at_1pct"] > 0.9 and band["band_high"] < 0.2
    assert band["rank_p"] == pytest.approx(1 / 9)              # above all 8 held-out oracles


def test_headlines_say_what_was_shown():
    nums = {"original": {"forget_acc": 95.0}, "unlearned": {"forget_acc": 10.0, "avg_gap": 3.25},
            "oracle": {"forget_acc": 5.0}}
    assert headline("none", "classification", nums).startswith(
        "no oracle was trained (--evidence none): nothing is claimed beyond the method's own guarantee; the removed "
        "rows' accuracy went from 95.0% (original) to 10.0% (unlearned)")
    assert "Avg. Gap 3.2 points; the removed rows' accuracy is 10.0% against the oracle's 5.0%" in \
        headline("oracle", "classification", nums)
    lira = {"band_low": 0.0, "band_high": 0.05, "lira_tpr_at_1pct": 0.3, "n_forget": 40, "indistinguishable": False,
            "rank_p": 1 / 17, "n_heldout": 16}
    caught = {"lira_tpr_at_1pct": 0.8, "indistinguishable": False}
    assert headline("tier1", "classification", {**nums, "lira": lira, "lira_original": caught}, oracles=16) == (
        "distinguishable: LiRA against 16 oracles flags 30.0% of the 40 removed rows at 1% FPR, above the band "
        "0.0%-5.0% that models retrained without them show (rank p-value 1/17, how often a model retrained without "
        "the rows would score this high); the model may still carry a trace of those rows.")
    wide = {**lira, "band_high": 0.9, "lira_tpr_at_1pct": 0.7, "indistinguishable": True, "rank_p": 5 / 17}
    assert headline("tier1", "classification", {**nums, "lira": wide, "lira_original": caught}, oracles=16).endswith(
        "band 0.0%-90.0% for models retrained without them; the untouched original: 80.0%; rank p-value 5/17, how "
        "often a model retrained without the rows would score this high); the band is wide (models retrained without "
        "the rows are themselves flagged up to 90.0%), so on these rows this test tells little.")
    regression = {"original": {"forget_mae": 0.1}, "unlearned": {"forget_mae": 0.9}}
    assert "mean absolute error went from 0.1 (original) to 0.9" in headline("none", "regression", regression)
    exact = headline("none", "classification", nums, exact={"retrained_shards": [1], "shards": 3})
    assert exact.startswith("exact: the removed rows were taken out of the SISA ensemble and the 1 of 3 shard(s)")
    assert "nothing is claimed" not in exact


def test_a_distinguishable_headline_on_a_wide_band_says_the_test_tells_little():
    lira = {"band_low": 0.0, "band_high": 0.95, "lira_tpr_at_1pct": 1.0, "n_forget": 20, "indistinguishable": False,
            "rank_p": 1 / 17, "n_heldout": 16}
    said = headline("tier1", "classification", {"lira": lira, "lira_original": {"lira_tpr_at_1pct": 1.0,
                                                                                "indistinguishable": False}},
                    oracles=16)
    assert said.startswith("distinguishable: LiRA against 16 oracles flags 100.0% of the 20 removed rows")
    assert "(rank p-value 1/17," in said and "still carries" not in said
    assert said.endswith("the band is wide (models retrained without the rows are themselves flagged up to 95.0%), "
                         "so on these rows this test tells little.")


def test_the_headline_is_inconclusive_when_even_the_original_is_inside_the_band():
    lira = {"band_low": 0.0, "band_high": 0.2, "lira_tpr_at_1pct": 0.1, "n_forget": 20, "indistinguishable": True,
            "rank_p": 9 / 17, "n_heldout": 16}
    original = {"lira_tpr_at_1pct": 0.05, "indistinguishable": True}
    assert headline("tier1", "classification", {"lira": lira, "lira_original": original}, oracles=16) == (
        "inconclusive: this test cannot tell even the untouched model from retraining on these rows (LiRA against 16 "
        "oracles, TPR at 1% FPR on the 20 removed rows: 10.0% unlearned, 5.0% original, band 0.0%-20.0% for models "
        "retrained without them); it says nothing about whether the rows were forgotten.")


def test_an_untouched_model_on_random_rows_is_reported_inconclusive(users, tmp_path):
    """Finetuning at lr 1e-6 leaves the original as it is; 20 random rows of a model that generalises are not
    memorised, so LiRA against 16 oracles cannot tell the original itself from retraining: not indistinguishable."""
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(map(str, np.random.default_rng(0).choice(240, 20, replace=False))) + "\n")
    r = serve_users(users, tmp_path / "out", request=f"ids:{ids}", method="finetune",
                    args={"epochs": 1, "lr": 1e-6}, evidence="tier1", oracles=16, test=users["test"],
                    test_options=DataOptions(group="user"))
    numbers = r.evidence["numbers"]
    assert numbers["lira_original"]["indistinguishable"] and numbers["lira"]["indistinguishable"]
    assert r.headline.startswith("inconclusive: this test cannot tell even the untouched model from retraining on "
                                 "these rows (LiRA against 16 oracles")
    assert "indistinguishable" not in r.headline and r.evidence["tier"] == 1


def test_data_loaders_by_format(tmp_path):
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    labels = np.array([0, 1], dtype=np.uint8)
    for name, arr, code in (("img-ubyte", images, 0x08), ("lab-ubyte", labels, 0x08)):
        header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (tmp_path / name).write_bytes(header + arr.tobytes())
    d = load_data(tmp_path / "img-ubyte", DataOptions(labels=tmp_path / "lab-ubyte")).dataset
    assert tuple(d.x.shape) == (2, 1, 3, 3) and float(d.x.max()) == pytest.approx(17 / 255)
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    assert len(load_data(tmp_path / "x.npy", DataOptions(labels=tmp_path / "y.npy"))) == 3
    for path, options, match in (
            (tmp_path / "x.npy", DataOptions(), r"npy features need their labels file \(--labels\)"),
            (tmp_path / "x.txt", DataOptions(), "no such file"),
            (tmp_path / "y.npy", DataOptions(id_column="id", labels=tmp_path / "y.npy"), "--id-column names a CSV"),
            (tmp_path / "x.npy", DataOptions(labels=tmp_path / "y.npy", extra={"size": 3}), "'size' does not apply")):
        with pytest.raises(ValueError, match=match):
            load_data(path, options)
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(ValueError, match="cannot tell its format"):
        load_data(tmp_path / "x.txt")


def test_default_ledger_is_the_one_expunge_ledger_reads(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPUNGE_LEDGER", str(tmp_path / "l.db"))
    assert forget_module.default_ledger() == tmp_path / "l.db"
