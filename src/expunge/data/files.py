"""Loaders for users' own files: .npz arrays, CSV tables with a target column, folders of images by class."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset

X_KEYS = ("x", "X", "features", "data", "inputs")
Y_KEYS = ("y", "Y", "targets", "target", "labels", "label")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _existing(path: str | os.PathLike, kind: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{kind} not found: {p}")
    return p


def load_npz(path: str | os.PathLike, *, x_key: str | None = None, y_key: str | None = None,
             groups_key: str | None = None, task: str | None = None) -> ArrayDataset:
    """Arrays from an ``.npz`` file. Keys default to the first present of x/X/features/data/inputs and
    y/Y/targets/target/labels/label. Object arrays are refused (they would need unpickling)."""
    p = _existing(path, "npz file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.keys())
            xk = x_key or next((k for k in X_KEYS if k in keys), None)
            yk = y_key or next((k for k in Y_KEYS if k in keys), None)
            if xk not in keys or yk not in keys:
                raise ValueError(f"{p}: cannot find features/targets among keys {keys}; pass x_key= and y_key=")
            groups = npz[groups_key] if groups_key else None
            return ArrayDataset(npz[xk], npz[yk], groups=groups, task=task, name=p.name)  # type: ignore[arg-type]
    except (OSError, EOFError) as e:
        raise ValueError(f"{p} is not a readable .npz file: {e}") from e
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"{p} holds object arrays, which would need unpickling; store numeric arrays") from e
        raise


def load_csv(path: str | os.PathLike, *, target: str, groups: str | None = None, task: str | None = None,
             delimiter: str = ",") -> ArrayDataset:
    """A CSV with a header row: every column but ``target`` (and ``groups``) is a numeric feature.

    Non-numeric targets become class indices in sorted order (names kept as ``class_names``)."""
    p = _existing(path, "CSV file")
    with open(p, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    if len(rows) < 2:
        raise ValueError(f"{p}: needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if target not in header:
        raise ValueError(f"{p}: no target column {target!r}; columns are {header}")
    if groups is not None and groups not in header:
        raise ValueError(f"{p}: no groups column {groups!r}; columns are {header}")
    ti = header.index(target)
    gi = header.index(groups) if groups else None
    feat_cols = [i for i in range(len(header)) if i not in (ti, gi)]
    x = np.empty((len(body), len(feat_cols)), dtype=np.float32)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{p}: line {r + 2} has {len(row)} fields, the header has {len(header)}")
        for j, c in enumerate(feat_cols):
            try:
                x[r, j] = float(row[c])
            except ValueError:
                raise ValueError(f"{p}: line {r + 2}, column {header[c]!r}: {row[c]!r} is not a number") from None
    raw_y = [row[ti] for row in body]
    class_names = None
    try:
        y = np.array([float(v) for v in raw_y])
        if task != "regression" and np.all(y == np.round(y)) and task is None and _looks_integer(raw_y):
            y = y.astype(np.int64)
    except ValueError:
        if task == "regression":
            raise ValueError(f"{p}: target column {target!r} is not numeric but task='regression'") from None
        class_names = sorted(set(raw_y))
        lookup = {c: i for i, c in enumerate(class_names)}
        y = np.array([lookup[v] for v in raw_y], dtype=np.int64)
    g = np.array([row[gi] for row in body]) if gi is not None else None
    return ArrayDataset(x, y, groups=g, task=task, class_names=class_names, name=p.name)  # type: ignore[arg-type]


def _looks_integer(values: list[str]) -> bool:
    return all(v.strip().lstrip("+-").isdigit() for v in values)


def load_image_folder(root: str | os.PathLike, *, size: tuple[int, int] | None = None,
                      grayscale: bool = False) -> ArrayDataset:
    """Images under ``root/<class name>/*.png`` (one sub-folder per class, classes sorted by name) as float
    tensors in [0, 1] of shape C x H x W. All images are resized to ``size`` (H, W); without it they must share
    the first image's size."""
    from PIL import Image, UnidentifiedImageError

    base = _existing(root, "image folder")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{base}: no class sub-folders; expected {base}/<class>/<image>")
    xs, ys = [], []
    for label, cls in enumerate(classes):
        files = sorted(f for f in (base / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if grayscale else "RGB")
                    if size is not None:
                        im = im.resize((size[1], size[0]))
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{f}: not a readable image ({e})") from None
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            if xs and arr.shape != xs[0].shape:
                raise ValueError(f"{f}: image shape {arr.shape[1:]} differs from {xs[0].shape[1:]}; pass size=(H, W)")
            xs.append(arr)
            ys.append(label)
    if not xs:
        raise ValueError(f"{base}: no images found (allowed suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return ArrayDataset(np.stack(xs), np.array(ys, dtype=np.int64), class_names=classes, name=base.name)
