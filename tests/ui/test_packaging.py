"""The page's files ship with the package: every file under ``expunge/ui/static`` is named by pyproject's
package-data, so a wheel (not only an editable install) serves the page."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "src" / "expunge" / "ui"


def test_every_static_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["expunge.ui"]
    shipped = {p for pattern in patterns for p in UI.glob(pattern) if p.is_file()}
    present = {p for p in (UI / "static").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert present, "no static files found"
    assert present == shipped, f"not shipped in a wheel: {sorted(str(p.relative_to(UI)) for p in present - shipped)}"
