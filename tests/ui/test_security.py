"""The comparator's defences: paths outside its roots, the token, the bind address, cross-site posts."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from .conftest import LOCAL, TOKEN  # noqa: E402


def _client(app, base_url=LOCAL):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=base_url)


@pytest.mark.parametrize("path", [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fcli.py",
    "/static/views/..%2f..%2fsources.py", "/static/%2fetc%2fpasswd", "/static//etc/passwd",
    "/static/..%5capp.py", "/static/%00app.js", "/static/views", "/static/",
])
def test_static_files_never_leave_the_static_folder(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), path
    assert "error" in r.json() and "import" not in r.text and "root:" not in r.text


def test_a_symlink_out_of_the_static_folder_is_refused(tmp_path, monkeypatch, client):
    import expunge.ui.app as server

    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>page</html>")
    (static / "ok.js").write_text("var ok = 1;")
    secret = tmp_path / "secret.js"
    secret.write_text("var secret = 'leaked';")
    (static / "leak.js").symlink_to(secret)
    monkeypatch.setattr(server, "STATIC", static)
    assert client.get("/static/ok.js").text == "var ok = 1;"
    r = client.get("/static/leak.js")
    assert r.status_code == 404 and "leaked" not in r.text


def _build_client(bench, tmp_path):
    from expunge.ui import create_app

    return _client(create_app([bench], store=tmp_path / "runs.db"))


@pytest.mark.parametrize("path", ["../bench-small/grid.json", "/etc/passwd", "%2e%2e/x.npz", "link/x.npz",
                                  "root/../../x.npz"])
def test_build_refuses_data_files_outside_the_roots(bench, tmp_path, path):
    from expunge.ui import create_app

    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    (outside / "x.npz").write_bytes(b"")
    (root / "link").symlink_to(outside)          # a symlink in a root that leads out of it
    with _client(create_app([bench, root], store=tmp_path / "runs.db")) as c:
        config = {"data": {"npz": path}, "model": {"name": "mlp"}, "forget": {"fraction": 0.1},
                  "method": "finetune"}
        r = c.post("/api/build", json={"kind": "run", "config": config})
        assert r.status_code == 400 and r.json()["error"].startswith("data.npz: ")
        assert c.get("/api/build").json()["jobs"] == []


@pytest.mark.parametrize("how", ["header", "query"])
def test_with_a_token_every_request_needs_it(bench, tmp_path, how):
    from expunge.ui import create_app

    app = create_app([bench], store=tmp_path / "runs.db", token=TOKEN)
    with _client(app, base_url="http://192.0.2.1:8765") as c:    # any host: the token guards
        exp = c.get("/api/experiments", headers={"Authorization": f"Bearer {TOKEN}"}).json()["experiments"][0]["id"]
        for path in ("/", "/static/app.js", "/static/plotly.min.js", "/api/experiments", "/api/methods",
                     "/api/nothing", "/api/build", "/api/build/x/events", f"/api/experiments/{exp}/thumb/0.png"):
            r = c.get(path)
            assert r.status_code == 401 and "token" in r.json()["error"], path
            wrong = c.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
            assert wrong.status_code == 401 and wrong.json()["error"] == "wrong token"
            assert c.get(path, params={"token": TOKEN.upper()}).status_code == 401
        if how == "header":
            ok = c.get("/api/experiments", headers={"Authorization": f"Bearer {TOKEN}"})
        else:
            ok = c.get("/api/experiments", params={"token": TOKEN})
        assert ok.status_code == 200 and len(ok.json()["experiments"]) == 8
        assert c.get("/", params={"token": TOKEN}).status_code == 200
        assert c.get("/static/app.js", params={"token": TOKEN}).status_code == 200
        thumb = c.get(f"/api/experiments/{exp}/thumb/0.png", params={"token": TOKEN})
        assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
        assert c.get("/api/build/x/events", params={"token": TOKEN}).json()["error"] == "unknown build job 'x'"


@pytest.mark.parametrize("token", ["short", "x" * 15, "has space in it 12345", "ünïcode-token-123456", "a/b" * 8])
def test_weak_or_unsafe_tokens_are_refused(bench, token):
    from expunge.ui import create_app

    with pytest.raises(ValueError, match="--token must be 16 to 256 characters"):
        create_app([bench], token=token, allow_build=False)


@pytest.mark.parametrize("host, ok", [("127.0.0.1:8765", True), ("localhost:8765", True), ("[::1]:8765", True),
                                      ("127.0.0.1", True), ("evil.example:8765", False), ("192.168.1.5:8765", False),
                                      ("localhost.evil.example", False)])
def test_without_a_token_only_loopback_host_names_are_answered(client, host, ok):
    r = client.get("/api/experiments", headers={"Host": host})
    assert (r.status_code == 200) is ok
    if not ok:
        assert r.status_code == 400 and "host" in r.json()["error"]


def test_cross_site_and_non_json_posts_are_refused(bench, tmp_path, rows):
    with _build_client(bench, tmp_path) as c:
        body = {"kind": "run", "base": rows["finetune"]["id"], "method": "finetune"}
        r = c.post("/api/build", json=body, headers={"Origin": "http://evil.example"})
        assert r.status_code == 400 and "cross-site" in r.json()["error"]
        import json

        r = c.post("/api/build", content=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        assert c.get("/api/build").json()["jobs"] == []


@pytest.mark.parametrize("site, ok", [("cross-site", False), ("same-site", False), ("same-origin", True),
                                      ("none", True), (None, True)])
def test_requests_from_other_sites_are_refused_before_any_work(client, rows, monkeypatch, site, ok):
    """An <img> or a form on another site reaches a loopback server with the browser's Sec-Fetch-Site header: it
    gets a refusal, and no view is computed (which could burn the CPU or fill the disk cache)."""
    from expunge.ui import analysis

    computed = []
    monkeypatch.setattr(analysis, "projection", lambda *a, **k: computed.append(k) or {"points": []})
    headers = {"Sec-Fetch-Site": site} if site else {}
    r = client.get(f"/api/experiments/{rows['finetune']['id']}/projection?method=tsne&n=1000", headers=headers)
    if ok:
        assert r.status_code == 200 and computed == [{"method": "tsne", "n": 1000}]
    else:
        assert r.status_code == 400 and "cross-site request refused" in r.json()["error"] and computed == []


def test_a_large_body_is_refused_from_its_content_length_before_it_is_read(bench, tmp_path):
    from expunge.ui.app import MAX_BODY_BYTES

    with _build_client(bench, tmp_path) as c:
        r = c.post("/api/build", content=b"{}", headers={"Content-Type": "application/json",
                                                           "Content-Length": str(MAX_BODY_BYTES + 1)})
        assert r.status_code == 400 and f"at most {MAX_BODY_BYTES:,} are allowed" in r.json()["error"]

        def chunks():                     # no Content-Length: the stream is cut off as soon as it passes the limit
            yield b'{"kind": "run", "pad": "'
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b"x" * 65536
            yield b'"}'

        r = c.post("/api/build", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and f"over {MAX_BODY_BYTES:,} bytes" in r.json()["error"]
        assert c.get("/api/build").json()["jobs"] == []


def test_serve_checks_the_host_and_token_rule_itself(bench, monkeypatch):
    import uvicorn

    from expunge.ui import Options, serve

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served on a public address without a token"))
    options = Options([Path(bench)], "0.0.0.0", 8765, Path(bench) / "ui-runs.db", None, None)
    with pytest.raises(ValueError, match="--host 0.0.0.0 is reachable from other machines; give --token"):
        serve(options, build=False, echo=lambda _: None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, words", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 is reachable from other machines; give --token"),
    (["--host", "192.168.1.5"], "give --token"),
    (["--host", "::"], "give --token"),
    (["--token", "short"], "--token must be"),
    (["--port", "0"], "--port 0 is not allowed"),
    (["--port", "70000"], "--port 70000 is not allowed"),
])
def test_cli_refuses_unsafe_or_bad_options(bench, capsys, args, words):
    from expunge.cli import main

    assert main(["ui", str(bench), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err


def test_cli_checks_paths_and_a_busy_port(bench, tmp_path, capsys):
    from expunge.cli import main

    assert main(["ui", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["ui", str(tmp_path / "notes.txt")]) == 2
    assert "not a run store" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", str(bench), "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_non_loopback_host_with_a_token_is_accepted(bench):
    from expunge.ui import check_options

    options = check_options([bench], host="0.0.0.0", port=_free_port(), token=TOKEN)
    assert options.host == "0.0.0.0" and options.token == TOKEN
    assert options.store == Path(bench) / "ui-runs.db"


def test_the_cli_serves_on_loopback_with_uvicorn_and_no_access_log(bench, tmp_path, monkeypatch, capsys):
    import uvicorn
    from fastapi import FastAPI

    from expunge.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    port = _free_port()
    assert main(["ui", str(bench), "--port", str(port), "--store", str(tmp_path / "ui.db")]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == port and served["access_log"] is False
    assert isinstance(served["app"], FastAPI) and (tmp_path / "ui.db").is_file()
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/" in out and "8 experiments" in out


class _Payload:
    """Unpickling this creates the file ``path``: proof that a model file was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_model_files_are_never_unpickled(bench, tmp_path, monkeypatch, how):
    import pickle
    import shutil

    import torch

    from expunge.ui import analysis, create_app

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))     # no view computed before: the models are read
    analysis.clear_memory()

    copy = tmp_path / "bench"
    shutil.copytree(bench, copy)
    marker = tmp_path / "unpickled"
    for model in (copy / "cache" / "unlearn").glob("*.safetensors"):
        if how == "pickle":
            model.write_bytes(pickle.dumps(_Payload(str(marker))))
        else:
            torch.save({"weights": _Payload(str(marker))}, model)
    from fastapi.testclient import TestClient

    app = create_app([copy], store=tmp_path / "runs.db", allow_build=False)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        rows = [r for r in c.get("/api/experiments").json()["experiments"] if r["method"] == "finetune"]
        assert rows
        for row in rows:
            r = c.get(f"/api/experiments/{row['id']}/classwise")
            assert r.status_code == 500 and "never unpickles" in r.json()["error"]   # the view fails; nothing ran
    assert not marker.exists()
