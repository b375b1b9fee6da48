"""``expunge ui --export DIR``: a static bundle holding every view of every model, written atomically."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

PREFIX = "window.EXPUNGE_EXPORT = "


def _data(bundle: Path) -> dict:
    text = (bundle / "data.js").read_text()
    assert text.startswith(PREFIX) and text.rstrip().endswith(";")
    return json.loads(text[len(PREFIX):].rstrip().rstrip(";"))


def test_export_holds_every_supported_view_of_each_model(bench, tmp_path, capsys):
    import plotly

    from expunge.cli import main

    out = tmp_path / "share" / "bundle"
    assert main(["ui", str(bench), "--export", str(out), "--export-images"]) == 0
    assert re.search(r"Wrote 8 experiments and \d+ views with \d+ forget-set images", capsys.readouterr().out)
    page = (out / "index.html").read_text()
    assert "<html data-export" in page
    assert (out / "static" / "app.js").is_file() and (out / "static" / "views" / "attack.js").is_file()
    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert (out / "static" / "plotly.min.js").read_bytes() == bundle.read_bytes()
    data = _data(out)
    rows = data["/api/experiments"]["experiments"]
    assert len(rows) == 8
    for row in rows:
        base = f"/api/experiments/{row['id']}"
        assert data[base] == row
        for view in row["views"]:
            keys = {"matrix": [f"{base}/matrix?split={s}" for s in ("forget", "retain", "test")],
                    "projection": [f"{base}/projection?method=pca&n=2000"]}.get(view, [f"{base}/{view}"])
            for key in keys:
                assert data[key], key
        forget = data[f"{base}/attack"]["index"]
        projection = data[f"{base}/projection?method=pca&n=2000"]
        assert len(projection["points"]) == len(set(projection["index"])) > len(forget)
        assert data[f"{base}/thumb/{forget[0]}.png"].startswith("data:image/png;base64,")
    assert not list(tmp_path.joinpath("share").glob(".bundle*"))      # no temporary directory left behind


def test_export_refuses_a_directory_that_is_not_a_previous_export(bench, tmp_path, capsys):
    from expunge.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["ui", str(bench), "--export", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not empty and is not a previous export" in err and "\n" not in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["ui", str(bench), "--export", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_export_replaces_a_previous_export_whole(bench, tmp_path):
    from expunge.ui import export_bundle

    out = tmp_path / "bundle"
    export_bundle([bench], out)
    (out / "stale.txt").write_text("from the first export")
    written = export_bundle([bench], out)
    assert written["experiments"] == 8 and not written["problems"]
    assert not (out / "stale.txt").exists() and (out / "data.js").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_an_export_holds_no_training_images_unless_asked(bench, tmp_path, capsys):
    """Thumbnails are forget-set images, the data a deletion request removes: a shared bundle has none by default."""
    from expunge.cli import main

    out = tmp_path / "bundle"
    assert main(["ui", str(bench), "--export", str(out)]) == 0
    assert "images" not in capsys.readouterr().out
    data = _data(out)
    assert not [k for k in data if "/thumb/" in k]
    assert "data:image" not in (out / "data.js").read_text()
    assert all(data[f"/api/experiments/{r['id']}/attack"]["index"] for r in data["/api/experiments"]["experiments"])
    assert main(["ui", str(bench), "--export-images"]) == 2
    assert "--export-images applies to --export DIR only" in capsys.readouterr().err
