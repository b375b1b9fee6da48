"""Fixtures of the server's tests: the small experiments of ``builders.py`` (built once per test process) and a
test client of the app over their bench."""
from __future__ import annotations

from pathlib import Path

import pytest

TOKEN = "test-token-0123456789abcdef"
LOCAL = "http://127.0.0.1"          # without a token the app answers only requests to a loopback host


@pytest.fixture(scope="session")
def small():
    """The small bench, run and audit of ``tests/ui/builders.py``, built once per test process."""
    pytest.importorskip("fastapi")
    from tests.ui.builders import small_workspace

    return small_workspace()


@pytest.fixture(scope="session")
def bench(small) -> Path:
    """A small finished bench directory: digits, an MLP, random 10% and class 3 forgetting, finetune and gradient
    ascent, one seed."""
    return small.bench


@pytest.fixture(scope="session")
def app(bench, tmp_path_factory):
    """The app over the bench, Build off (tests that build make their own)."""
    from expunge.ui import create_app

    return create_app([bench], store=tmp_path_factory.mktemp("ui-store") / "ui-runs.db", allow_build=False)


@pytest.fixture(scope="session")
def client(app):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="session")
def rows(client) -> dict[str, dict]:
    """The bench's rows of its random 10% scenario, by method."""
    return {r["method"]: r for r in client.get("/api/experiments").json()["experiments"]
            if r["scenario"] == "random 10%"}
