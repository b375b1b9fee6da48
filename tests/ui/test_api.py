"""The comparator's JSON API over a small bench, through FastAPI's test client."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

FORGET = 144          # 10% of the 1,437 digits the bench trains on


def test_experiments_lists_each_model_of_the_bench_with_scores_and_views(client):
    body = client.get("/api/experiments").json()
    rows = body["experiments"]
    assert sorted(r["method"] for r in rows) == sorted(["finetune", "gradient_ascent", "oracle", "original"] * 2)
    assert {r["scenario"] for r in rows} == {"random 10%", "class 3"}
    keys = [c["key"] for c in body["columns"]]
    assert {"method", "args", "scenario", "ua", "ra", "ta", "mia", "avg_gap", "noise_floor", "seconds", "tier",
            "status"} <= set(keys)
    for r in rows:
        assert r["status"] == "FINISHED" and r["has_model"] and r["task"] == "classification"
        assert r["views"] == ["classwise", "matrix", "cka", "projection", "attack"]
        assert client.get(f"/api/experiments/{r['id']}").json() == r
    finetune = next(r for r in rows if r["method"] == "finetune")
    assert finetune["args"] == {"epochs": 1, "lr": 0.05}
    assert 0 <= finetune["scores"]["ua"] <= 100 and finetune["scores"]["avg_gap"] is not None


def test_each_view_answers_the_numbers_of_its_model(client, rows):
    exp = rows["finetune"]["id"]
    classwise = client.get(f"/api/experiments/{exp}/classwise").json()
    assert classwise["classes"] == [str(c) for c in range(10)]
    assert set(classwise["splits"]) == {"forget", "retain", "test"}
    assert len(classwise["splits"]["forget"]["model"]) == 10
    for split in ("forget", "retain", "test"):
        m = client.get(f"/api/experiments/{exp}/matrix", params={"split": split}).json()
        assert len(m["model"]) == 10 and all(len(r) == 10 for r in m["model"])
    forget = client.get(f"/api/experiments/{exp}/matrix?split=forget").json()
    assert sum(map(sum, forget["model"])) == sum(map(sum, forget["oracle"])) == FORGET
    cka = client.get(f"/api/experiments/{exp}/cka").json()
    assert cka["layers"] and len(cka["vs_original"]) == len(cka["vs_oracle"]) == len(cka["layers"])
    assert all(-1e-6 <= v <= 1 + 1e-6 for v in cka["vs_original"] + cka["vs_oracle"])
    proj = client.get(f"/api/experiments/{exp}/projection?method=pca&n=2000").json()
    assert len(proj["points"]) == len(proj["index"]) == len(proj["forget"]) == len(proj["label"])
    assert sum(proj["forget"]) == FORGET
    other = client.get(f"/api/experiments/{rows['gradient_ascent']['id']}/projection?method=pca&n=2000").json()
    assert other["index"] == proj["index"]                 # the same examples, so the two can be linked
    attack = client.get(f"/api/experiments/{exp}/attack").json()
    assert len(attack["index"]) == FORGET
    for role in ("model", "oracle"):
        assert len(attack["forget"][role]["entropy"]) == len(attack["forget"][role]["confidence"]) == FORGET
        assert all(0 <= c <= 1 for c in attack["forget"][role]["confidence"])


@pytest.mark.parametrize("path, status, words", [
    ("/api/experiments/{exp}/matrix?split=train", 400, "split='train' is not allowed"),
    ("/api/experiments/{exp}/projection?n=5", 400, "n='5' is not allowed; expected one of 500, 1000, 2000"),
    ("/api/experiments/{exp}/projection?method=tsne&n=1234", 400, "n='1234' is not allowed"),
    ("/api/experiments/{exp}/projection?method=isomap", 400, "method='isomap'"),
    ("/api/experiments/{exp}/cka?layer=1", 400, "unknown parameter 'layer'"),
    ("/api/experiments/{exp}/facts", 404, "has no view 'facts'"),
    ("/api/experiments/{exp}/thumb/x.png", 404, "thumbnail"),
    ("/api/experiments/bench:nope:0/classwise", 404, "unknown experiment"),
    ("/api/experiments/bench:nope:0", 404, "unknown experiment"),
    ("/api/nothing", 404, "not found"),
])
def test_bad_requests_get_one_line_json_errors(client, rows, path, status, words):
    r = client.get(path.format(exp=rows["finetune"]["id"]))
    assert r.status_code == status
    error = r.json()["error"]
    assert words in error and "\n" not in error


@pytest.mark.parametrize("error", [KeyError("model"), ValueError("bad shape"), TypeError("NoneType"),
                                   IndexError("out of range")])
def test_a_failure_inside_a_view_is_a_500_named_by_its_type_not_bad_input(app, rows, monkeypatch, error):
    from fastapi.testclient import TestClient

    from expunge.ui import analysis

    from .conftest import LOCAL

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(analysis, "cka", broken)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:   # as a browser sees it
        r = client.get(f"/api/experiments/{rows['finetune']['id']}/cka")
    assert r.status_code == 500
    assert r.json()["error"] == f"{type(error).__name__}: {error}"


def test_a_path_the_data_layer_refuses_is_a_404(client, rows, monkeypatch):
    from expunge.ui import analysis
    from expunge.ui.sources import Refused

    def refused(*args, **kwargs):
        raise Refused("path '../x' is not allowed: '..' leads out of the given directories")

    monkeypatch.setattr(analysis, "cka", refused)
    r = client.get(f"/api/experiments/{rows['finetune']['id']}/cka")
    assert r.status_code == 404 and r.json()["error"].startswith("path '../x' is not allowed")


def test_thumbnails_are_pngs_of_training_images(client, rows):
    exp = rows["finetune"]["id"]
    r = client.get(f"/api/experiments/{exp}/thumb/0.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get(f"/api/experiments/{exp}/thumb/0.png").content != \
        client.get(f"/api/experiments/{exp}/thumb/1.png").content


def test_page_static_files_and_plotly_from_the_wheel(client):
    import plotly

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "expunge" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    served = client.get("/static/plotly.min.js")
    assert served.status_code == 200 and served.content == bundle.read_bytes()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)      # nothing from the internet


def test_methods_come_from_the_registry(client):
    from expunge.methods.base import defaults, get

    body = client.get("/api/methods").json()
    by_name = {m["name"]: m for m in body["methods"]}
    assert body["build"] is False
    assert by_name["finetune"]["args"] == defaults(get("finetune").Args)
    assert "classification" in by_name["finetune"]["tasks"] and "retrain" not in by_name


def test_build_is_refused_when_turned_off(client, rows):
    r = client.post("/api/build", json={"kind": "run", "base": rows["finetune"]["id"], "method": "finetune"})
    assert r.status_code == 404 and "--no-build" in r.json()["error"]


def test_importing_expunge_imports_no_web_framework():
    code = ("import sys, expunge, expunge.ui, expunge.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'plotly', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ui_without_fastapi_says_what_to_install(monkeypatch, capsys, tmp_path):
    from expunge.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["ui", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install 'expunge[ui]'" in err and "\n" not in err


def test_answers_are_strict_json_with_non_finite_numbers_as_null():
    import json as std_json

    import numpy as np

    from expunge.ui.app import json_response

    body = json_response({"a": float("nan"), "b": [np.float32(0.5), float("inf"), (1, 2)], "c": np.int64(3)}).body
    assert std_json.loads(body) == {"a": None, "b": [0.5, None, [1, 2]], "c": 3}
    assert b"NaN" not in body and b"Infinity" not in body
