"""Build: runs started through the API are checked as the command line checks them, queued, run, and land in the
experiment list; a diverging run ends with its one-line error."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from .conftest import LOCAL  # noqa: E402


@pytest.fixture(scope="module")
def builder_client(bench, tmp_path_factory):
    from fastapi.testclient import TestClient

    from expunge.ui import create_app

    app = create_app([bench], store=tmp_path_factory.mktemp("ui-build") / "built.db")
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def _wait(client, job: str, timeout: float = 240.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = client.get(f"/api/build/{job}").json()
        if state["status"] in ("finished", "failed"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not end in {timeout:.0f}s: {state}")


def _base(client) -> str:
    rows = client.get("/api/experiments").json()["experiments"]
    return next(r["id"] for r in rows if r["method"] == "finetune" and r["scenario"] == "random 10%")


@pytest.mark.parametrize("change, words", [
    ({"method": "no_such_method"}, "unknown method 'no_such_method'"),
    ({"method": "npo"}, "method 'npo' supports language tasks; the data is classification"),     # an LM method
    ({"args": {"lr": "fast"}}, "args.lr"),
    ({"args": {"epochs": -1}},
     "config error at args.epochs: method 'finetune': training setting epochs=-1 is not allowed"),
    ({"args": {"bogus": 1}}, "unknown argument(s) ['bogus']"),
    ({"forget": {"classes": [42]}}, "[42]"),
    ({"forget": {"fraction": 1.5}}, "forget.fraction"),
    ({"forget": {"fraction": 0.1, "classes": [1]}}, "exactly one of"),
    ({"seed": -3}, "config error at seed: expected an integer >= 0; got -3"),
    ({"kind": "sweep"}, "kind 'sweep' is not allowed; expected run, bench"),
    ({"kind": "bench"}, "a bench request is"),
    ({"extra": 1}, "unknown key 'extra'"),
    ({"base": "bench:nope:0"}, "unknown base experiment"),
    ({"config": {"data": {"name": "digits"}}}, "takes no"),
])
def test_bad_requests_are_refused_in_one_line_and_nothing_is_queued(builder_client, change, words):
    body = {"kind": "run", "base": _base(builder_client), "method": "finetune", "args": {"epochs": 1}, **change}
    before = builder_client.get("/api/build").json()["jobs"]
    r = builder_client.post("/api/build", json=body)
    assert r.status_code == 400, r.json()
    error = r.json()["error"]
    assert words in error and "\n" not in error
    assert builder_client.get("/api/build").json()["jobs"] == before


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"run"'])
def test_bodies_that_are_not_build_requests_are_refused(builder_client, body):
    r = builder_client.post("/api/build", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "\n" not in r.json()["error"]


def test_a_config_request_is_checked_like_a_config_file(builder_client):
    config = {"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"lr": -1}, "forget": {"fraction": 0.1},
              "method": "finetune"}
    r = builder_client.post("/api/build", json={"kind": "run", "config": config})
    assert r.status_code == 400 and r.json()["error"].startswith("config error at train")
    r = builder_client.post("/api/build", json={"kind": "run", "config": {**config, "train": {}, "out": "/tmp/x"}})
    assert r.status_code == 400 and r.json()["error"].startswith("config.out is not allowed from the page")
    r = builder_client.post("/api/build", json={"kind": "run", "config": {**config, "train": {},
                                                                          "data": {"npz": ["/etc/passwd"]}}})
    assert r.status_code == 400 and r.json()["error"].startswith("data.npz must be a path (a string)")


def test_a_good_run_finishes_and_its_row_appears_and_a_diverging_one_shows_its_error(builder_client):
    c = builder_client
    base = _base(c)
    good = c.post("/api/build", json={"kind": "run", "base": base, "method": "finetune",
                                      "args": {"epochs": 1, "lr": 0.05}})      # the bench's own arguments
    assert good.status_code == 200 and good.json()["status"] in ("queued", "running")
    bad = c.post("/api/build", json={"kind": "run", "base": base, "method": "gradient_ascent",
                                     "args": {"epochs": 3, "lr": 1e8}})
    assert bad.status_code == 200
    # progress streamed as server-sent events, one JSON state per message, ending with the last state
    states = []
    with c.stream("GET", f"/api/build/{good.json()['job']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[len("data: "):]))
    assert states[-1]["status"] == "finished" and states[-1]["error"] is None
    assert len(states) >= 2 and any("expunge run" in ln for ln in states[-1]["progress"])
    done = _wait(c, good.json()["job"])
    assert done == states[-1]
    rows = {r["id"]: r for r in c.get("/api/experiments").json()["experiments"]}
    row = rows[done["experiment"]]
    assert row["kind"] == "run" and row["method"] == "finetune" and row["status"] == "FINISHED"
    assert row["args"]["epochs"] == 1 and row["has_model"] and row["scores"]["avg_gap"] is not None
    assert "fraction: 0.1" in row["scenario"]            # the base experiment's forget request
    # the same data, split, original, oracle, method and seed as the bench's cell: the same scores
    for key in ("ua", "ra", "ta", "mia", "avg_gap"):
        assert row["scores"][key] == pytest.approx(rows[base]["scores"][key], abs=1e-9), key

    failed = _wait(c, bad.json()["job"])
    assert failed["status"] == "failed" and failed["error"].startswith("diverged")
    assert "\n" not in failed["error"] and "gradient_ascent" in failed["error"]
    rows = {r["id"]: r for r in c.get("/api/experiments").json()["experiments"]}
    assert rows[failed["experiment"]]["status"] == "FAILED" and not rows[failed["experiment"]]["has_model"]
    assert [j["job"] for j in c.get("/api/build").json()["jobs"]] == [good.json()["job"], bad.json()["job"]]
    assert c.get("/api/build/nope").status_code == 404


BENCH = {"name": "from-the-page", "seeds": 1, "data": {"name": "digits"}, "model": {"name": "mlp", "args": {"hidden": [16]}},
         "train": {"epochs": 2, "lr": 0.05}, "scenarios": [{"name": "class 3", "classes": [3]}],
         "methods": {"finetune": {"epochs": 1, "lr": 0.05}}}


@pytest.mark.parametrize("change, words", [
    ({"methods": {"no_such_method": {}}}, "no_such_method"),
    ({"scenarios": [{"classes": "three"}]}, "scenarios"),
    ({"out": "elsewhere"}, "config.out is not allowed from the page"),
    ({"summary": "/tmp/results-copy.json"}, "config.summary is not allowed from the page"),   # bench writes it
    ({"store": "x.db"}, "config.store is not allowed from the page"),
    ({"data": [{"npz": 5, "label": "x"}]}, "data.npz must be a path (a string)"),
    ({"data": [{"npz": "../../x.npz", "label": "x"}]}, "data.npz: "),
])
def test_bad_bench_requests_are_refused_in_one_line(builder_client, change, words):
    before = builder_client.get("/api/build").json()["jobs"]
    r = builder_client.post("/api/build", json={"kind": "bench", "config": {**BENCH, **change}})
    assert r.status_code == 400 and words in r.json()["error"] and "\n" not in r.json()["error"]
    assert builder_client.get("/api/build").json()["jobs"] == before


def test_a_small_bench_built_from_the_page_lands_in_the_experiment_list(builder_client):
    r = builder_client.post("/api/build", json={"kind": "bench", "config": BENCH})
    assert r.status_code == 200 and r.json()["kind"] == "bench"
    done = _wait(builder_client, r.json()["job"])
    assert done["status"] == "finished", done
    rows = [e for e in builder_client.get("/api/experiments").json()["experiments"]
            if e["id"].startswith(f"bench:{done['job']}:")]
    assert sorted(e["method"] for e in rows) == ["finetune", "oracle", "original"]
    assert all(e["status"] == "FINISHED" and e["has_model"] and e["scenario"] == "class 3" for e in rows)
    assert done["experiment"] == next(e["id"] for e in rows if e["method"] == "finetune")


def test_a_base_experiment_lends_its_data_model_recipe_and_forget_request(small, tmp_path):
    from expunge.ui.build import Builder
    from expunge.ui.sources import Workspace

    ws = Workspace([small.root])
    builder = Builder(ws, tmp_path / "runs.db")
    rows = ws.experiments()
    run = next(r for r in rows if r["kind"] == "run")
    raw = builder.config_for({"kind": "run", "base": run["id"], "method": "gradient_ascent", "args": {"epochs": 1}})
    assert raw["seed"] == 1 and raw["data"] == {"name": "digits", "test_fraction": 0.2}   # tests/ui/builders.py
    assert raw["model"]["args"] == {"hidden": [32]} and raw["train"]["epochs"] == 3
    assert raw["forget"]["fraction"] == 0.1 and raw["method"] == "gradient_ascent" and raw["args"] == {"epochs": 1}
    cell = next(r for r in rows if r["kind"] == "bench" and r["scenario"] == "class 3" and r["method"] == "oracle")
    raw = builder.config_for({"kind": "run", "base": cell["id"], "method": "finetune"})
    assert raw["forget"] == {"classes": [3]} and raw["train"]["epochs"] == 3 and raw["seed"] == 0
    raw = builder.config_for({"kind": "run", "base": cell["id"], "method": "finetune", "forget": {"classes": [5]},
                              "seed": 4})
    assert raw["forget"] == {"classes": [5]} and raw["seed"] == 4
    audit = next(r for r in rows if r["kind"] == "audit")
    with pytest.raises(ValueError, match="does not record the data, model and recipe"):
        builder.config_for({"kind": "run", "base": audit["id"], "method": "finetune"})
    assert builder.jobs() == []


def test_the_queue_limit_holds_under_concurrent_requests_and_checks_run_one_at_a_time(tmp_path, monkeypatch):
    import threading

    from expunge.ui import build

    builder = build.Builder(object(), tmp_path / "runs.db")
    release, active, most = threading.Event(), [0], [0]
    lock = threading.Lock()

    def slow_check(body):                      # a check that takes a while, as reading data and models does
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return {"method": "finetune", "name": body["name"]}

    monkeypatch.setattr(builder, "config_for", slow_check)
    monkeypatch.setattr(builder, "_run", lambda job: release.wait(30))      # nothing runs
    outcomes: list[str] = []

    def request(i: int) -> None:
        try:
            builder.submit({"kind": "run", "name": f"r{i}"})
            outcomes.append("queued")
        except ValueError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=request, args=(i,)) for i in range(build.MAX_QUEUED + 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    release.set()
    builder.close()
    assert outcomes.count("queued") == build.MAX_QUEUED == len(builder.jobs())
    assert all(f"at most {build.MAX_QUEUED} may wait at once" in o for o in outcomes if o != "queued")
    assert most[0] == 1
