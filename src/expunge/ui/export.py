"""``expunge ui --export DIR``: the comparator's views as a static bundle that opens without a server.

``DIR`` gets ``index.html`` (the page, marked ``data-export``), ``static/`` (the page's scripts and styles, and
``static/plotly.min.js`` from the installed plotly wheel) and ``data.js``, which sets ``window.EXPUNGE_EXPORT`` to
``{"<API path with its query>": <the JSON the server would answer>, ...}``: ``/api/experiments``, every row, and for
every experiment with a model each view its row lists (the prediction matrix for each split; the projection by PCA
only). Thumbnails of the forget examples on image data (as ``data:`` URLs) go in only when asked
(``images=True``, ``expunge ui --export DIR --export-images``): they are the very data a deletion request removes,
so a bundle shared by default carries none, and the page then shows example numbers instead of images. The page
reads that object instead of fetching and hides Build.

The bundle is written into a temporary directory next to ``DIR`` and renamed into place, so ``DIR`` is never half
written; a non-empty ``DIR`` is refused unless it is a previous export (it carries :data:`MARKER`).
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlencode

from .app import STATIC, ApiError, experiments_payload, jsonable, plotly_js, view_data, view_params

MARKER = ".expunge-export"
EXPORT_QUERIES: dict[str, list[dict[str, str]]] = {      # the query strings the page asks each view with
    "matrix": [{"split": s} for s in ("forget", "retain", "test")],
    "projection": [{"method": "pca", "n": "2000"}],
}
MAX_THUMBS = 300          # thumbnails per experiment (its forget examples, the first ones)


def check_destination(dest: Path) -> None:
    """ValueError with one line unless ``dest`` is a new or empty directory, or a previous export, whose parent can
    be written."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"--export {dest} is a file; expected a directory (new, empty, or a previous export)")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise ValueError(f"--export {dest} is not empty and is not a previous export; give a new or empty directory")
    ancestor = dest.parent.resolve()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--export {dest} cannot be written ({ancestor} is not a writable directory)")


def collect(ws: Any, on_view: Callable[[str], None] | None = None, *,
            images: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The API answers a static export holds, by path, and one line per view that could not be computed;
    ``images``: with the thumbnails of each model's forget examples."""
    from . import analysis

    data: dict[str, Any] = {"/api/experiments": jsonable(experiments_payload(ws))}
    problems: list[str] = []
    for row in data["/api/experiments"]["experiments"]:
        exp_id = row["id"]
        base = f"/api/experiments/{exp_id}"
        data[base] = row
        if not row.get("has_model"):
            continue
        for view in row.get("views") or []:
            for query in EXPORT_QUERIES.get(view, [{}]):
                path = base + f"/{view}" + (f"?{urlencode(query)}" if query else "")
                try:
                    data[path] = view_data(ws, exp_id, view, view_params(view, query))
                except (ApiError, ValueError, TypeError, KeyError, OSError) as e:
                    problems.append(f"{path}: {' '.join(str(getattr(e, 'message', e)).split())}")
                    continue
                if on_view:
                    on_view(path)
        attack = data.get(f"{base}/attack")
        thumb = getattr(analysis, "thumb", None)
        if images and isinstance(attack, dict) and callable(thumb):
            for index in (attack.get("index") or [])[:MAX_THUMBS]:
                try:
                    png = thumb(ws, exp_id, int(index))
                except (ValueError, KeyError, IndexError, OSError):
                    png = None
                if png is None:
                    break            # not image data
                data[f"{base}/thumb/{int(index)}.png"] = "data:image/png;base64," + base64.b64encode(png).decode()
    return data, problems


def export_bundle(paths: Sequence[str | Path], dest: str | Path, store: str | Path | None = None, *,
                  workspace: Any = None, on_view: Callable[[str], None] | None = None,
                  images: bool = False) -> dict[str, Any]:
    """Write the static bundle of every experiment under ``paths`` (and in ``store``) to ``dest``; returns
    ``{"path", "experiments", "views", "images", "problems"}``. ``images``: include the forget examples'
    thumbnails (off by default: a shared bundle then holds no training images)."""
    dest = Path(dest).expanduser()
    check_destination(dest)
    if workspace is None:
        from .sources import Workspace

        workspace = Workspace([Path(p) for p in paths], store=store)
    data, problems = collect(workspace, on_view, images=images)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()                                  # the usual permissions (mkdtemp's would be owner-only)
    try:
        _write(tmp, data)
        (tmp / MARKER).write_text(json.dumps({"written": time.time(), "experiments":
                                              len(data["/api/experiments"]["experiments"])}) + "\n")
        if dest.exists():                         # a previous export or an empty directory: swapped out whole
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    views = sum(1 for k in data if k.count("/") >= 4 and not k.endswith(".png"))
    return {"path": dest, "experiments": len(data["/api/experiments"]["experiments"]), "views": views,
            "images": sum(1 for k in data if k.endswith(".png")), "problems": problems}


def _write(root: Path, data: dict[str, Any]) -> None:
    shutil.copytree(STATIC, root / "static", ignore=shutil.ignore_patterns("__pycache__", ".*"))
    shutil.copyfile(plotly_js(), root / "static" / "plotly.min.js")
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = re.sub(r"<html\b", "<html data-export", page, count=1)
    (root / "index.html").write_text(page, encoding="utf-8")
    blob = json.dumps(jsonable(data), separators=(",", ":"), allow_nan=False)
    (root / "data.js").write_text(f"window.EXPUNGE_EXPORT = {blob};\n", encoding="utf-8")
