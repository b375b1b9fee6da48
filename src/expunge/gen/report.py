"""Sample grids: what image generators draw, as one PNG for the reports.

:func:`sample_grid` draws ``per_class`` samples of each of ``classes`` from every model, all from the same seed (the
same starting noise for every model, so that the blocks differ only by the models), and lays them out as one block
per model: rows are classes (labelled with their names), columns are samples, the model's name above. Blocks sit
side by side, ``columns`` to a row of blocks. The size in pixels follows from the layout alone
(:func:`grid_pixels`). :func:`grid_html` gives the same grid as an inline ``<figure>`` with a caption for the HTML
reports; :func:`run_grid` the grid of a generation run recorded by ``expunge run`` (its original, unlearned model
and oracle, saved beside each other) for ``expunge report RUN``. matplotlib on the Agg backend; no display needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .base import GenerativeModel, is_generative

CELL_PX = 32        # one sample's side in the grid, in pixels
LABEL_PX = 96       # left of each block: the class names
TITLE_PX = 28       # above each block: the model's name
GAP_PX = 16         # between blocks, horizontally and vertically
PAD_PX = 8          # right and bottom edge
DPI = 100
MAX_PER_CLASS = 64
MAX_CLASSES = 100
GRID_ROWS = 10      # classes a report's grid shows (grid_rows)


def grid_pixels(n_models: int, n_classes: int, per_class: int, columns: int | None = None) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG :func:`sample_grid` writes for this layout."""
    cols = _columns(n_models, columns)
    rows = -(-n_models // cols)
    block_w, block_h = LABEL_PX + per_class * CELL_PX, TITLE_PX + n_classes * CELL_PX
    return cols * block_w + (cols - 1) * GAP_PX + PAD_PX, rows * block_h + (rows - 1) * GAP_PX + PAD_PX


def sample_grid(models: dict[str, GenerativeModel], classes: Sequence[int], *, per_class: int = 8, seed: int = 0,
                class_names: Sequence[str] | dict[int, str] | None = None, columns: int | None = None) -> bytes:
    """A PNG of ``per_class`` samples of each class in ``classes`` from every model (name -> model), drawn with
    ``seed`` (the same for every model): one block per model, rows = classes, columns = samples. ``class_names``:
    the row labels (a list indexed by class, or class -> name; default the class numbers). ``columns``: blocks per
    row (default up to 3). ValueError naming a bad argument, before anything is drawn."""
    from ..report import png_bytes, pyplot

    classes, names = _check(models, classes, per_class, seed, class_names, columns)
    cols = _columns(len(models), columns)
    width, height = grid_pixels(len(models), len(classes), per_class, columns)
    plt = pyplot()
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    labels = torch.tensor(classes, dtype=torch.long, device="cpu").repeat_interleave(per_class)
    block_w, block_h = LABEL_PX + per_class * CELL_PX, TITLE_PX + len(classes) * CELL_PX
    for i, (name, model) in enumerate(models.items()):
        images = model.sample(labels, seed=seed).detach().float().cpu()
        mosaic = _mosaic(images, len(classes), per_class)
        r, c = divmod(i, cols)
        left = c * (block_w + GAP_PX) + LABEL_PX
        top = r * (block_h + GAP_PX) + TITLE_PX
        ax = fig.add_axes((left / width, 1 - (top + len(classes) * CELL_PX) / height,
                           per_class * CELL_PX / width, len(classes) * CELL_PX / height))
        gray = mosaic.ndim == 2
        ax.imshow(mosaic, cmap="gray" if gray else None, vmin=0.0, vmax=1.0, interpolation="nearest",
                  aspect="auto", extent=(0, per_class, len(classes), 0))
        ax.set_xticks([])
        ax.set_yticks([k + 0.5 for k in range(len(classes))], [names[k] for k in classes], fontsize=8)
        ax.tick_params(length=0)
        for k in range(1, len(classes)):
            ax.axhline(k, color="white", linewidth=1)
        for k in range(1, per_class):
            ax.axvline(k, color="white", linewidth=0.5)
        ax.set_title(name, fontsize=9, loc="left", pad=4)
    return png_bytes(fig)


def grid_html(models: dict[str, GenerativeModel], classes: Sequence[int], *, per_class: int = 8, seed: int = 0,
              class_names: Sequence[str] | dict[int, str] | None = None, columns: int | None = None,
              caption: str | None = None) -> str:
    """:func:`sample_grid` as an inline ``<figure>`` (``<img src="data:image/png;base64,...">``) with a caption
    (default: what the rows, columns and seed are)."""
    import base64

    from ..report import figure_html

    png = sample_grid(models, classes, per_class=per_class, seed=seed, class_names=class_names, columns=columns)
    if caption is None:
        caption = (f"Samples of {', '.join(models)}: one block per model, rows = classes, columns = {per_class} "
                   f"samples per class, drawn from seed {seed} (the same starting noise for every model).")
    return figure_html("data:image/png;base64," + base64.b64encode(png).decode(),
                       f"sample grid: {', '.join(models)}", caption)


def grid_rows(n_classes: int, forgotten: Sequence[int], names: Sequence[str] | None = None,
              limit: int = GRID_ROWS) -> tuple[list[int], dict[int, str]]:
    """The classes a report's grid shows and their row labels: the forgotten classes first (marked ``*``), then
    the retained ones in order, ``limit`` rows in all (more where more classes were forgotten); labels are
    ``names`` where given, else the class numbers."""
    gone = [int(c) for c in forgotten if isinstance(c, (int, np.integer)) and 0 <= int(c) < n_classes]
    classes = (gone + [c for c in range(n_classes) if c not in gone])[:max(limit, len(gone))]
    label = lambda c: str(names[c]) if names is not None and c < len(names) else str(c)
    return classes, {c: label(c) + (" *" if c in gone else "") for c in classes}


def run_grid(record: Any, out: str | Path, *, per_class: int = 8) -> dict[str, str]:
    """``extra_md`` and ``extra_html`` for :func:`expunge.report.write_reports` of a run recorded by ``expunge
    run`` on an image generator: the sample grid of its original, unlearned model and oracle (the artifacts the run
    saved; those whose files are gone are left out and named), written to ``out/samples.png`` and inline in the
    HTML; rows as :func:`grid_rows` gives them. Empty for a run without a saved generator."""
    import base64

    from ..modelio import atomic_write, load_model
    from ..report import figure_html

    paths = {kind: Path(p) for p, kind in getattr(record, "artifacts", {}).items()}
    if not {"original", "oracle"} & set(paths):           # saved by generation runs only
        return {}
    wanted = [("original", "original"), (str(record.params.get("method", "unlearned")), "model"),
              ("oracle", "oracle")]
    models, missing = {}, []
    for name, kind in wanted:
        path = paths.get(kind)
        model = load_model(path) if path is not None and path.is_file() else None
        if model is not None and is_generative(model):
            models[name] = model
        elif kind in paths:
            missing.append(name)
    if not models:
        return {}
    forgotten = record.params.get("forget.classes")
    classes, labels = grid_rows(min(m.n_classes for m in models.values()),
                                forgotten if isinstance(forgotten, list) else [])
    png = sample_grid(models, classes, per_class=per_class, class_names=labels)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out) / "samples.png", png)
    caption = (f"Samples of {', '.join(models)}: one block per model, rows = classes (* = forgotten), columns = "
               f"{per_class} samples per class, drawn from seed 0 (the same starting noise for every model).")
    caption += f" Files gone: {', '.join(missing)}." if missing else ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    return {"extra_md": f"## Samples\n\n![sample grid](samples.png)\n\n{caption}",
            "extra_html": "<h2>Samples</h2>\n" + figure_html(uri, "sample grid: " + ", ".join(models), caption)}


def _columns(n_models: int, columns: int | None) -> int:
    return max(1, min(n_models, 3 if columns is None else columns))


def _mosaic(images: torch.Tensor, n_rows: int, per_row: int) -> np.ndarray:
    """``[n_rows * per_row, C, H, W]`` images in [-1, 1] -> one array ``[n_rows*H, per_row*W]`` (or ``[..., 3]``)
    in [0, 1]."""
    n, ch, h, w = images.shape
    x = ((images.clamp(-1, 1) + 1) / 2).reshape(n_rows, per_row, ch, h, w)
    x = x.permute(0, 3, 1, 4, 2).reshape(n_rows * h, per_row * w, ch).numpy()
    return x[..., 0] if ch == 1 else (x if ch == 3 else x.mean(-1))


def _check(models: Any, classes: Any, per_class: Any, seed: Any, class_names: Any, columns: Any
           ) -> tuple[list[int], dict[int, str]]:
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict of name -> image generator (expunge.gen)")
    for name, model in models.items():
        if not isinstance(name, str) or not is_generative(model):
            raise TypeError(f"models must map names (str) to image generators (expunge.gen); got {name!r}: "
                            f"{type(model).__name__}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 1 <= per_class <= MAX_PER_CLASS:
        raise ValueError(f"per_class must be an integer in 1..{MAX_PER_CLASS}; got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int) or columns < 1):
        raise ValueError(f"columns must be an integer >= 1 or None; got {columns!r}")
    classes = list(classes) if not isinstance(classes, (str, bytes)) else None
    if not classes or len(classes) > MAX_CLASSES or any(isinstance(c, bool) or not isinstance(c, (int, np.integer))
                                                        for c in classes):
        raise ValueError(f"classes must be a non-empty list of at most {MAX_CLASSES} class numbers; got {classes!r}")
    classes = [int(c) for c in classes]
    n = min(m.n_classes for m in models.values())
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range; the models generate classes 0..{n - 1}")
    if class_names is None:
        names = {c: str(c) for c in classes}
    elif isinstance(class_names, dict):
        names = {c: str(class_names.get(c, c)) for c in classes}
    else:
        listed = list(class_names)
        names = {c: str(listed[c]) if c < len(listed) else str(c) for c in classes}
    return classes, names
