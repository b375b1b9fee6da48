"""The comparator's data layer: experiments found under the given paths (a bench, a run store, an audit), their
scores as recorded, their models and data rebuilt exactly, and paths outside the given roots refused."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from expunge import evaluate, load_model
from expunge.store import RunStore
from expunge.ui.sources import Refused, Workspace, unflatten
from tests.ui.builders import BENCH_METHODS, BENCH_SCENARIOS, small_workspace

KEYS = {"ua": "ua", "ra": "retain_acc", "ta": "test_acc", "mia": "mia_efficacy", "avg_gap": "avg_gap",
        "seconds": "seconds"}


@pytest.fixture(scope="module")
def small():
    return small_workspace()


@pytest.fixture(scope="module")
def ws(small):
    return Workspace([small.root])


def _rows(ws, **match):
    return [r for r in ws.experiments() if all(r.get(k) == v for k, v in match.items())]


def test_bench_rows_have_the_methods_and_the_scores_of_results_json(ws, small):
    results = json.loads((small.bench / "results.json").read_text())
    bench = _rows(ws, kind="bench")
    for scenario in BENCH_SCENARIOS:
        rows = {r["method"]: r for r in bench if r["scenario"] == scenario}
        assert set(rows) == {"original", "oracle", *BENCH_METHODS}
        floor = next(v["noise_floor"]["avg_gap"] for v in results["verdicts"] if v["scenario"] == scenario)
        for res in (r for r in results["rows"] if r["scenario"] == scenario):
            row = rows[res["method"]]
            assert row["status"] == "FINISHED" and row["seed"] == 0 and row["task"] == "classification"
            for key, metric in KEYS.items():
                assert row["scores"][key] == pytest.approx(res["mean"].get(metric), nan_ok=True), (key, row)
            assert row["scores"]["noise_floor"] == pytest.approx(floor)
            assert row["tier"] == 0 and row["has_model"]
            assert row["views"] == ["classwise", "matrix", "cka", "projection", "attack"]
    assert rows["finetune"]["args"] == {"epochs": 1, "lr": 0.05}


def test_ids_are_url_safe_unique_and_stable(ws, small):
    ids = [r["id"] for r in ws.experiments()]
    assert len(ids) == len(set(ids)) == 4 * len(BENCH_SCENARIOS) + 2   # bench rows, the run, the audit
    assert all(re.fullmatch(r"[A-Za-z0-9:._-]+", i) for i in ids)
    keys = {"id", "source", "kind", "task", "method", "args", "scenario", "seed", "scores", "tier", "status", "error",
            "has_model", "views"}
    for row in ws.experiments():
        assert keys <= set(row) and set(row["scores"]) >= {"ua", "ra", "ta", "mia", "avg_gap", "noise_floor",
                                                          "seconds"}
    assert [r["id"] for r in Workspace([small.root]).experiments()] == ids
    # the same experiments reached through the bench directory and the store alone keep their ids
    alone = Workspace([small.bench], store=small.store)
    assert {r["id"] for r in alone.experiments()} == set(ids)
    run = next(r["id"] for r in alone.experiments() if r["kind"] == "run")
    assert alone.model(run) is not None      # the run's model file, outside the paths, recorded by the store
    with pytest.raises(Refused):
        alone.resolve("../run/finetune.safetensors")
    with pytest.raises(KeyError):
        ws.experiment("bench:nope:0")


def test_run_row_has_the_recorded_scores_and_its_audit(ws, small):
    (run,) = _rows(ws, kind="run")
    rec = RunStore(small.store).get(run["id"].split(":")[-1])
    assert run["method"] == "finetune" and run["seed"] == 1 and run["args"] == {"epochs": 1, "lr": 0.05}
    for key, metric in KEYS.items():
        assert run["scores"][key] == pytest.approx(rec.metrics[metric])
    assert run["has_model"] and run["audit"] is True
    (audit,) = _rows(ws, kind="audit")
    assert audit["method"] == "finetune" and audit["n_models"] == 2 and audit["tier"] == 0
    assert not audit["has_model"] and audit["views"] == []
    # a bench row of the same method on another forget set (another seed) is not linked to the audit
    assert not any(r["audit"] for r in _rows(ws, kind="bench"))


def test_bench_models_and_data_reproduce_the_recorded_scores(ws):
    for row in _rows(ws, kind="bench", scenario="random 10%"):
        if row["method"] in ("finetune", "original"):
            data = ws.data(row["id"])
            scores = evaluate(ws.model(row["id"]), forget=data.forget, retain=data.retain, test=data.test,
                              reference=ws.model(row["id"], "oracle"), seed=0)
            for key in ("ua", "ra", "ta", "mia", "avg_gap"):
                assert scores[KEYS[key]] == pytest.approx(row["scores"][key], abs=1e-9), (row["method"], key)
            assert len(data.forget_index) == 144 and not set(data.forget_index) & set(data.retain_index)


def test_a_runs_original_and_oracle_are_retrained_bitwise_from_its_config(ws, small):
    (run,) = _rows(ws, kind="run")
    rec = RunStore(small.store).get(run["id"].split(":")[-1])
    data = ws.data(run["id"])
    for role in ("original", "oracle"):
        scores = evaluate(ws.model(run["id"], role), forget=data.forget, retain=data.retain, test=data.test, seed=1)
        assert scores["test_acc"] == rec.metrics[f"{role}_test_acc"]
        assert scores["forget_acc"] == rec.metrics[f"{role}_forget_acc"]
    assert ws.fingerprint(run["id"], "oracle").startswith("rebuilt-")
    (audit,) = _rows(ws, kind="audit")
    with pytest.raises(ValueError, match="has no model"):
        ws.model(audit["id"])


def test_resolve_refuses_traversal_absolute_paths_and_symlinks_out(small, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(small.bench, root / "bench")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "bench" / "link.txt")
    os.symlink(root / "bench" / "results.json", root / "bench" / "inside.json")
    ws = Workspace([root])
    assert ws.resolve("bench/results.json") == (root / "bench" / "results.json").resolve()
    assert ws.resolve("bench/inside.json") == (root / "bench" / "results.json").resolve()
    for bad in ("../secret.txt", "bench/../../secret.txt", str(outside), "/etc/passwd", "bench/link.txt",
                "bench/missing.json", "", "bench\\..\\..\\secret.txt"):
        with pytest.raises(Refused):
            ws.resolve(bad)
    assert issubclass(Refused, ValueError)
    with pytest.raises(ValueError, match="does not exist"):
        Workspace([tmp_path / "nothing-here"])


def test_a_model_file_linked_out_of_the_roots_is_refused(small, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(small.bench, root / "bench")
    ws = Workspace([root])
    row = next(r for r in ws.experiments() if r["method"] == "finetune")
    model = root / "bench" / "cache" / "unlearn" / (row["id"].split(":")[-1] + ".safetensors")
    moved = tmp_path / "elsewhere.safetensors"
    shutil.move(model, moved)
    shutil.move(model.with_suffix(".json"), moved.with_suffix(".json"))
    os.symlink(moved, model)
    os.symlink(moved.with_suffix(".json"), model.with_suffix(".json"))
    assert load_model(model) is not None            # a valid model, but outside the given paths
    with pytest.raises(Refused):
        Workspace([root]).model(row["id"])


def test_a_failed_or_pending_job_shows_its_status_and_error(small, tmp_path):
    import sqlite3

    root = tmp_path / "bench"
    shutil.copytree(small.bench, root)
    ws = Workspace([root])
    row = next(r for r in ws.experiments() if r["method"] == "gradient_ascent")
    key = row["id"].split(":")[-1]
    with sqlite3.connect(root / "runs.db") as db:
        rid = db.execute("SELECT run_id FROM tags WHERE key = 'job_key' AND value = ?", (key,)).fetchone()[0]
        db.execute("UPDATE runs SET status = 'FAILED', error = 'diverged: loss is nan' WHERE run_id = ?", (rid,))
    failed = Workspace([root]).experiment(row["id"])
    assert failed["status"] == "FAILED" and failed["error"] == "diverged: loss is nan"
    assert not failed["has_model"] and failed["views"] == []


def test_unflatten_reverses_the_stores_dotted_parameters():
    assert unflatten({"data.name": "digits", "model.args.hidden": [32], "args": {}, "seed": 1}) == \
        {"data": {"name": "digits"}, "model": {"args": {"hidden": [32]}}, "args": {}, "seed": 1}


def test_an_unreadable_store_is_reported_and_the_rest_still_shown(small, tmp_path):
    shutil.copytree(small.bench, tmp_path / "bench")
    (tmp_path / "broken.db").write_bytes(b"not a database" * 100)
    ws = Workspace([tmp_path])
    assert {r["kind"] for r in ws.experiments()} == {"bench"}
    assert len(ws.problems) == 1 and "broken.db" in ws.problems[0]


class _Trap:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_model_file_is_never_unpickled(small, tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(_Trap(marker)))
    with RunStore(small.store) as db:
        run = next(r for r in db.runs(limit=50) if r.kind == "run")
        rec = db.get(run.run_id)
    with RunStore(tmp_path / "evil.db") as db:
        db.record("evil", "run", params=rec.params, metrics=rec.metrics, artifacts={str(evil): "model"})
    ws = Workspace([tmp_path])
    (row,) = ws.experiments()
    assert row["has_model"]
    with pytest.raises(ValueError, match="pickle"):
        ws.model(row["id"])
    assert not marker.exists()


def test_a_child_linked_out_of_the_given_path_is_skipped_and_named(small, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(small.bench, outside / "bench")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside / "bench", root / "bench")               # a bench directory that lives elsewhere
    os.symlink(small.store, root / "runs.db")                   # a run store that lives elsewhere
    ws = Workspace([root])
    assert ws.experiments() == []
    assert len(ws.problems) == 2 and all("leading out of" in p and str(root) in p for p in ws.problems)
    shutil.copytree(small.bench, root / "own")                  # beside them, a bench of its own is read
    rows = Workspace([root]).experiments()
    assert rows and {r["source"] for r in rows} == {"own"}
    assert Workspace([outside / "bench"]).experiments()        # given itself, the target is read


def test_a_bench_row_lists_the_attack_view_only_with_its_oracle(small, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(small.bench, root)
    ws = Workspace([root])
    oracle = next(r for r in ws.experiments() if r["method"] == "oracle" and r["scenario"] == "class 3")
    model = root / "cache" / "oracle" / (oracle["id"].split(":")[-1] + ".safetensors")
    model.unlink()
    model.with_suffix(".json").unlink()
    for row in Workspace([root]).experiments():
        if row["scenario"] == "class 3" and row["method"] != "oracle":
            assert row["has_model"] and row["views"] == ["classwise", "matrix", "cka", "projection"], row
        elif row["scenario"] == "class 3":
            assert not row["has_model"] and row["views"] == []
        else:
            assert "attack" in row["views"]


def test_a_language_model_directory_with_pickle_weights_is_never_read(tmp_path):
    import pickle

    from expunge.experiment import build_template

    marker = tmp_path / "unpickled"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ValueError, match="pickle"):
        build_template({"path": str(model)}, None)
    assert not marker.exists()


def test_a_replaced_weights_file_changes_the_fingerprint(small, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(small.bench, root)
    ws = Workspace([root])
    row = next(r for r in ws.experiments() if r["method"] == "finetune")
    before = ws.fingerprint(row["id"])
    assert Workspace([root]).fingerprint(row["id"]) == before          # stable while nothing changes
    model = root / "cache" / "unlearn" / (row["id"].split(":")[-1] + ".safetensors")
    model.write_bytes(model.read_bytes()[:-1] + b"\0")                 # rewritten behind its sidecar
    assert ws.fingerprint(row["id"]) != before
