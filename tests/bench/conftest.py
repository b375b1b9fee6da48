"""Fixtures for the bench tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    monkeypatch.setenv("EXPUNGE_STORE", str(path))
    return path
