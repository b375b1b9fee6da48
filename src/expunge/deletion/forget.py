"""Serving one deletion request on a model file: the unlearned model, an evidence report and a certificate.

:func:`serve` takes a deployed model (a ``.safetensors`` file and its JSON sidecar, or a language-model directory),
the data it was trained on and a request (:mod:`expunge.deletion.request`), and:

1. checks everything before any work: the model files and their checksum, the user's architecture (``arch=
   "module:Class"``) and its arguments, the data (its fingerprint against the one the sidecar records), the
   request, the method and its arguments (parsed by the method's own parser) against the task, the recipe where
   the method or the evidence needs one, the output directory (absent or empty), the ledger (an existing one
   passes the ledger's own file, format and head checks; a new one needs its directory, except at the default
   location, whose directory is created) and the key; the cheap checks (method, arguments, evidence, recipe file,
   output directory, ledger, key) come before the model and the data are loaded;
2. unlearns with ``expunge.unlearn`` (``method="auto"``: :func:`expunge.deletion.auto.choose_method` picks the
   method and its arguments on a tuning forget set of the same kind and size, never on the request; the report
   holds its record, the certificate's evidence a summary with ``chosen_by: auto``); a SISA ensemble is served
   exactly by :func:`expunge.deletion.exact.serve_exact`;
3. gathers the evidence asked for (``none``; ``oracle``: one model retrained without the rows, the gaps and
   Avg. Gap; ``tier1``: K oracles as a batched ensemble and offline LiRA against them, with at least 100
   test rows as non-members, as expunge's tier-1 evidence does, :mod:`expunge.audit.tier1`) and words it
   (:mod:`expunge.deletion.report`);
4. writes the unlearned model (``model.safetensors`` + sidecar; the sidecar's ``extra.deletion`` links the input
   model's SHA-256, the request and every row removed from the training file so far), ``report.md`` /
   ``report.json`` and ``certificate.json`` / ``certificate.md`` into a temporary directory beside ``out_dir``,
   renames it into place, then appends the certificate to the ledger (removing the directory again if that
   fails): a failure at any step leaves nothing behind.

Requests arrive over time: a later request on the output of an earlier one is linked to it in the ledger (by the
input model's hash, :meth:`Ledger.find_by_output_hash`, else the request id its sidecar records). Its data may be
the same training file (the rows earlier requests removed are taken out of the retain set and the oracles'
training set, from the sidecar's record) or the file with those rows deleted.

The command line appends to the ledger ``expunge ledger`` reads by default (:func:`default_ledger`:
``$EXPUNGE_LEDGER``, else ``~/.expunge/ledger.db``) unless ``--ledger DB`` or ``--no-ledger`` is given, so the
requests served on one machine form one chain.
"""
from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data.datasets import fingerprint, resolve
from .report import MIN_TEST_ROWS
from .request import Request, parse_request

EVIDENCE = ("none", "oracle", "tier1")
MODEL_FILE = "model.safetensors"
TARGET_COLUMNS = ("label", "target", "y", "class")   # a CSV's target column when --target is not given
IDX_SUFFIXES = ("-ubyte", "-ubyte.gz", ".idx", ".idx.gz")


def default_ledger(out_dir: str | os.PathLike | None = None) -> Path:
    """The ledger a request is appended to when none is named: the one ``expunge ledger`` reads by default,
    ``$EXPUNGE_LEDGER``, else ``~/.expunge/ledger.db`` (:func:`expunge.deletion.ledger.default_path`)."""
    from .ledger import default_path

    return default_path()


# ---------------------------------------------------------------------------------------------- data files
@dataclass
class DataOptions:
    """How to read a data file: the CSV target, group and id columns, the labels file of ``.npy`` or IDX features,
    and loader keywords (``x_key``, ``y_key``, ``task``, ``size``, ``grayscale``, ``delimiter``, ``max_length``)."""

    target: str | None = None
    group: str | None = None
    id_column: str | None = None
    labels: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataFile:
    """A loaded data file: the dataset, the raw columns a ``where:`` predicate reads (a CSV's), the row ids."""

    path: Path | None
    dataset: Dataset
    columns: dict[str, np.ndarray] | None = None
    ids: np.ndarray | None = None
    id_column: str | None = None
    group_column: str | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


LOADER_KEYS = {"npz": ("x_key", "y_key", "task"), "csv": ("task", "delimiter"), "npy": ("task",),
               "images": ("size", "grayscale"), "idx": (), "jsonl": ("max_length",)}


def data_kind(path: Path) -> str:
    """Which loader reads ``path``: npz, npy, csv, idx, jsonl or images (a directory of class folders)."""
    name = path.name.lower()
    if path.is_dir():
        return "images"
    if name.endswith(IDX_SUFFIXES):
        return "idx"
    suffix = path.suffix.lower()
    kinds = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}
    if suffix not in kinds:
        raise ValueError(f"--data {path}: cannot tell its format; expected a .npz, .npy (with --labels), .csv, "
                         ".jsonl, IDX (*-ubyte[.gz], with --labels) file or a folder of images by class")
    return kinds[suffix]


def load_data(path: str | os.PathLike, options: DataOptions | None = None, *, tokenizer: Any = None,
              what: str = "--data") -> DataFile:
    """Read a data file with the loader its format needs (:func:`data_kind`); ValueError in one line."""
    from ..data import files as loaders
    from ..data.datasets import ArrayDataset

    o = options or DataOptions()
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{what} {p}: no such file or directory")
    kind = data_kind(p)
    unknown = sorted(set(o.extra) - set(LOADER_KEYS[kind]))
    if unknown:
        raise ValueError(f"{what} {p}: {unknown[0]!r} does not apply to {kind} data; allowed: "
                         f"{', '.join(LOADER_KEYS[kind]) or 'none'}")
    if kind != "csv" and o.id_column is not None:
        raise ValueError(f"--id-column names a CSV column; {p} is {kind} data (use ids:FILE with row indices)")
    if kind not in ("csv", "npz", "jsonl") and o.group is not None:
        raise ValueError(f"--group names a CSV column, an .npz array or a JSONL key; {p} is {kind} data")
    if kind in ("npy", "idx") and o.labels is None:
        raise ValueError(f"{what} {p}: {kind} features need their labels file (--labels)")
    if kind not in ("npy", "idx") and o.labels is not None:
        raise ValueError(f"--labels applies to .npy and IDX features; {p} is {kind} data")
    if kind == "npz":
        return DataFile(p, loaders.load_npz(p, groups_key=o.group, **o.extra), group_column=o.group)
    if kind == "npy":
        return DataFile(p, loaders.load_npy(p, o.labels, **o.extra))   # type: ignore[arg-type]
    if kind == "images":
        size = o.extra.get("size")
        return DataFile(p, loaders.load_image_folder(p, size=tuple(size) if size else None,
                                                     grayscale=bool(o.extra.get("grayscale", False))))
    if kind == "idx":
        from ..data.images import load_idx

        x, y = load_idx(p), load_idx(o.labels)  # type: ignore[arg-type]
        if len(x) != len(y):
            raise ValueError(f"{what} {p}: {len(x)} images but {len(y)} labels in {o.labels}")
        x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        return DataFile(p, ArrayDataset(x[:, None] if x.ndim == 3 else x, y.astype(np.int64), name=p.name))
    if kind == "jsonl":
        if tokenizer is None:
            raise ValueError(f"{what} {p}: JSON Lines data is text for a language model (a model directory)")
        from ..data.text import load_jsonl

        return DataFile(p, load_jsonl(p, tokenizer, group_key=o.group, **o.extra), group_column=o.group)
    return _load_csv(p, o)


def _load_csv(p: Path, o: DataOptions) -> DataFile:
    from ..data import files as loaders

    delimiter = o.extra.get("delimiter", "\t" if p.suffix.lower() == ".tsv" else ",")
    header, columns = _csv_columns(p, delimiter)
    if not columns:                  # unreadable, or no data rows: the loader names the problem
        loaders.load_csv(p, target=o.target or TARGET_COLUMNS[0], delimiter=delimiter)
    target = o.target or next((c for c in TARGET_COLUMNS if c in header), None)
    if target is None:
        raise ValueError(f"{p}: no target column named {' / '.join(TARGET_COLUMNS)}; name it with --target "
                         f"(columns: {', '.join(header)})")
    for flag, col in (("--target", target), ("--group", o.group), ("--id-column", o.id_column)):
        if col is not None and col not in header:
            raise ValueError(f"{p}: no column {col!r} ({flag}); columns: {', '.join(header)}")
    if o.id_column is not None and o.id_column == target:
        raise ValueError(f"{p}: the id column {o.id_column!r} is also the target; name another column")
    settings = {k: v for k, v in o.extra.items() if k != "delimiter"}
    ids = None
    if o.id_column is None or o.id_column == o.group:
        data = loaders.load_csv(p, target=target, groups=o.group, delimiter=delimiter, **settings)
    else:                    # the id is not a feature: read the table without its column
        data = _without_column(p, header.index(o.id_column), delimiter, target, o.group, settings)
    if o.id_column is not None:
        ids = columns[o.id_column]
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{p}: the id column {o.id_column!r} repeats values; ids must name one row each")
    return DataFile(p, data, columns=columns, ids=ids, id_column=o.id_column, group_column=o.group)


def _without_column(p: Path, drop: int, delimiter: str, target: str, group: str | None,
                    settings: dict[str, Any]) -> Any:
    """``load_csv`` of ``p`` with column ``drop`` left out (read through a temporary copy; errors name ``p``)."""
    import tempfile

    from ..data import files as loaders

    with open(p, newline="", encoding="utf-8") as fh:
        rows = [[c for j, c in enumerate(r) if j != drop] for r in csv.reader(fh, delimiter=delimiter) if r]
    with tempfile.TemporaryDirectory(prefix="expunge-csv-") as tmp:
        copy = Path(tmp) / p.name
        with open(copy, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter=delimiter).writerows(rows)
        try:
            return loaders.load_csv(copy, target=target, groups=group, delimiter=delimiter, **settings)
        except ValueError as e:
            raise ValueError(str(e).replace(str(copy), str(p))) from None


def _csv_columns(p: Path, delimiter: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """A CSV's header and raw columns (integers, numbers or text, as :func:`expunge.data.load_csv` types groups)."""
    from ..data.files import _numbers_if_numeric

    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh, delimiter=delimiter) if r]
    except (UnicodeDecodeError, csv.Error, OSError):
        return [], {}                       # load_csv names the problem
    if len(rows) < 2:
        return [h.strip() for h in rows[0]] if rows else [], {}
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if len(r) == len(header)]
    return header, {h: _numbers_if_numeric([r[j].strip() for r in body]) for j, h in enumerate(header)}


# ---------------------------------------------------------------------------------------------- models
@dataclass
class LoadedModel:
    model: nn.Module
    path: Path | None
    meta: dict[str, Any]
    arch: dict[str, Any] | None = None       # {"class": "module:Class", "kwargs": {...}} for a user's class


def import_class(spec: str) -> type:
    """``module:Class`` (a module importable from ``sys.path`` or, searched last, the current directory) or
    ``path/file.py:Class``; ValueError naming what could not be found. ``sys.path`` is left as it was."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(f"--arch {spec!r}: expected module:Class (e.g. mynets:Net) or path/to/file.py:Class")
    module_name, _, cls_name = spec.rpartition(":")
    if not module_name or not cls_name.isidentifier():
        raise ValueError(f"--arch {spec!r}: expected module:Class (e.g. mynets:Net) or path/to/file.py:Class")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name).expanduser()
            if not file.is_file():
                raise ValueError(f"--arch {spec}: no such file {file}")
            name = f"_expunge_arch_{file.stem}"
            module_spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            cwd = os.getcwd()
            saved = list(sys.path)
            if cwd not in sys.path:
                sys.path.append(cwd)       # last: a file in the current directory never shadows an installed module
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path[:] = saved
    except ImportError as e:
        raise ValueError(f"--arch {spec}: cannot import {module_name!r} ({e}); run from the directory that holds "
                         "it, add that directory to PYTHONPATH, or give path/to/file.py:Class") from None
    except SyntaxError as e:
        raise ValueError(f"--arch {spec}: {module_name} has a syntax error (line {e.lineno}: {e.msg})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ValueError(f"--arch {spec}: module {module_name!r} has no {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"--arch {spec}: {cls_name} is not a torch nn.Module class")
    return cls


def load_original(path: str | os.PathLike, *, arch: str | None = None,
                  arch_args: dict[str, Any] | None = None) -> LoadedModel:
    """The model to unlearn: a built-in architecture or generator rebuilt from the sidecar, a language-model
    directory, or the user's class ``arch`` built with ``arch_args`` (else the ``extra.arch.kwargs`` the sidecar
    records) and filled with the file's weights (read with safetensors; never unpickled)."""
    from ..modelio import PICKLE_SUFFIXES, check_model_files, load_model, read_sidecar

    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"model {p}: no such file or directory")
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"model {p}: a pickle checkpoint; expunge never unpickles files. Load it yourself if you "
                         "trust it and save it with expunge.save_model (safetensors + sidecar)")
    if p.is_dir():
        if arch is not None:
            raise ValueError(f"--arch applies to .safetensors files; {p} is a model directory")
        return LoadedModel(load_model(p), p, {})
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"model {p}: expected a .safetensors file with its .json sidecar, or a model directory")
    header = check_model_files(p)
    meta = read_sidecar(p)
    if not meta:
        raise ValueError(f"model {p}: no sidecar {p.with_suffix('.json').name} beside it; save models with "
                         "expunge.save_model")
    if arch is None:
        try:
            return LoadedModel(load_model(p), p, meta)
        except ValueError as e:
            if "names no built-in architecture" in str(e):
                raise ValueError(f"model {p}: its sidecar names no built-in architecture; give the class that built "
                                 "it with --arch module:Class (and --arch-args JSON)") from None
            raise
    cls = import_class(arch)
    recorded = (meta.get("extra") or {}).get("arch") if isinstance(meta.get("extra"), dict) else None
    kwargs = arch_args if arch_args is not None else (
        recorded.get("kwargs", {}) if isinstance(recorded, dict) else {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"--arch-args must be a JSON object of constructor arguments; got {kwargs!r:.60}")
    try:
        with torch.device("meta"):        # no memory: a huge layer is refused by the shape check, not allocated
            skeleton = cls(**kwargs)
        _check_against_header(p, skeleton, header, arch, kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = cls(**kwargs)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's constructor: any failure is bad input
        raise ValueError(f"--arch {arch} cannot be built with {kwargs}: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--arch {arch} did not build a torch nn.Module")
    loaded = load_model(p, into=model)
    return LoadedModel(loaded, p, meta, arch={"class": arch, "kwargs": kwargs})


def _check_against_header(p: Path, skeleton: nn.Module, header: dict, arch: str, kwargs: dict) -> None:
    want = skeleton.state_dict()
    missing, unexpected = sorted(set(want) - set(header)), sorted(set(header) - set(want))
    bad = [k for k in want if k in header and tuple(want[k].shape) != tuple(header[k][1])]
    if missing or unexpected or bad:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else
                f"tensor {bad[0]} has shape {tuple(header[bad[0]][1])} in the file, {tuple(want[bad[0]].shape)} in "
                "the class")
        raise ValueError(f"model {p}: its weights do not fit --arch {arch} built with {kwargs} ({what}); give the "
                         "constructor arguments it was built with (--arch-args JSON)")


# ---------------------------------------------------------------------------------------------- recipes
def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """A training recipe from a YAML or JSON file: a mapping of recipe settings, or an experiment config whose
    ``train:`` section holds them; checked by :class:`expunge.training.Recipe`."""
    from ..config import load_yaml
    from ..training import Recipe

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"--recipe {p}: no such file")
    if p.stat().st_size > 1_000_000:
        raise ValueError(f"--recipe {p}: {p.stat().st_size:,} bytes; a recipe file is at most 1,000,000 bytes")
    try:
        raw = load_yaml(p.read_text(encoding="utf-8"), where=f"--recipe {p}")     # JSON is YAML too
    except UnicodeDecodeError:
        raise ValueError(f"--recipe {p}: not UTF-8 text") from None
    if isinstance(raw, dict) and isinstance(raw.get("train"), dict):
        raw = raw["train"]
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--recipe {p}: expected a mapping of training settings (epochs, lr, batch_size, ...)")
    try:
        return Recipe.from_dict(raw).to_dict()
    except (TypeError, ValueError) as e:
        raise ValueError(f"--recipe {p}: {e}") from None


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ForgetResult:
    """What :func:`serve` wrote: the output directory and its files, the ledger entry (None without a ledger)."""

    out_dir: Path
    model_path: Path
    report_path: Path
    report_json: Path
    certificate_json: Path
    certificate_md: Path
    entry: Any
    request_id: str
    method: str
    args: dict[str, Any]
    exact: bool
    headline: str
    evidence: dict[str, Any]
    previous_request: str | None = None


@dataclass
class _Plan:
    """Everything checked before any work."""

    loaded: LoadedModel
    data: DataFile
    test: DataFile | None
    request: Request
    removed_before: np.ndarray          # rows of the data file earlier requests removed (when it is the full file)
    method: str
    args: dict[str, Any]
    evidence: str
    recipe: dict[str, Any] | None
    out_dir: Path
    ledger: Path | None
    key: Path | None
    seed: int
    oracles: int
    exact: bool
    budget: dict[str, Any]
    data_note: str
    frame: str               # the fingerprint of the data as given: removed rows are positions in it


def _as_datafile(data: Any, what: str, options: DataOptions | None, tokenizer: Any) -> DataFile:
    if isinstance(data, DataFile):
        return data
    if isinstance(data, Dataset):
        return DataFile(None, data)
    if isinstance(data, (str, os.PathLike)):
        return load_data(data, options, tokenizer=tokenizer, what=what)
    raise TypeError(f"{what} must be a data file path, a loaded DataFile or a torch Dataset; got "
                    f"{type(data).__name__}")


def _parse_int(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}; got {value!r}")
    return int(value)


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` must be absent or an empty directory whose parent can be written; ValueError otherwise."""
    out = Path(out_dir).expanduser()
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} is a file; give a new or empty directory")
        if any(out.iterdir()):
            raise ValueError(f"--out {out} is not empty; give a new or empty directory (outputs are never "
                             "overwritten)")
    parent = out.resolve().parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be written ({ancestor} is not a writable directory)")
    return out


def _check_ledger(path: Path | None) -> tuple[Path | None, Path | None]:
    """``(the ledger's path, the directory to create for it or None)``. An existing file must pass the ledger's own
    checks (a SQLite database holding an expunge ledger of this format whose recorded head is its last entry),
    read without writing; a new one needs an existing writable directory, except at the default location
    (:func:`default_ledger`), whose missing directory is created (mode 0700) once every check has passed."""
    if path is None:
        return None, None
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"--ledger {p} is a directory; expected a SQLite file")
    if p.exists():
        _check_ledger_file(p)
        return p, None
    parent = p.absolute().parent
    is_default = p.absolute() == default_ledger().absolute()
    what = f"ledger {p} (the default; set $EXPUNGE_LEDGER or give --ledger to use another)" if is_default else \
        f"--ledger {p}"
    if parent.is_dir():
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"{what} cannot be created ({parent} is not writable)")
        return p, None
    if parent.exists():
        raise ValueError(f"{what}: {parent} is not a directory")
    if not is_default:
        raise ValueError(f"--ledger {p}: directory {parent} does not exist; create it first or give another path")
    if not parent.parent.is_dir() or not os.access(parent.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: its directory {parent} cannot be created ({parent.parent} is not a writable "
                         "directory)")
    return p, parent


def _check_ledger_file(p: Path) -> None:
    """The checks :meth:`Ledger.append` makes before appending, run now (no write): the file is a readable SQLite
    database, holds an expunge ledger of this format (``Ledger._read``), and its recorded head is its last entry
    (``Ledger._head_problems``)."""
    from .ledger import Ledger

    ledger = Ledger(p)
    rows, meta = ledger._read()          # ValueError naming the file when it is not a ledger this expunge reads
    problems = ledger._head_problems(rows, meta)
    if problems:
        raise ValueError(f"ledger {p} is damaged ({problems[0]}); run expunge ledger verify before appending")


def _previous_deletion(meta: dict[str, Any]) -> dict[str, Any]:
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    record = extra.get("deletion") if isinstance(extra, dict) else None
    return record if isinstance(record, dict) else {}


def _check_data(loaded: LoadedModel, data: DataFile, check: bool) -> tuple[np.ndarray, str, str]:
    """``(rows of data earlier requests removed, what the check found, the data's fingerprint)`` after checking
    that ``data`` is the model's training data: the file its last request was served on (earlier rows then come
    from the sidecar's record) or that file without the rows removed since; ValueError in one line otherwise.

    The sidecar's ``extra.deletion`` names its frame: ``trained_on`` (the fingerprint of the data file its request
    was served on) and ``removed_rows`` (positions in that file); a model expunge forget never touched has its
    training data's fingerprint in its provenance and no removed rows."""
    from ..provenance import provenance

    before = _previous_deletion(loaded.meta)
    original = provenance(loaded.model).data_fingerprint
    trained_on = before.get("trained_on") or original
    retained = before.get("retained_fingerprint")
    removed = np.asarray(before.get("removed_rows", []), dtype=np.int64)
    mine = fingerprint(data.dataset)
    if trained_on is None:
        return np.zeros(0, np.int64), "the model records no data fingerprint: the data could not be checked", mine
    if mine == trained_on:
        if removed.size and (removed.min() < 0 or removed.max() >= len(data)):
            raise ValueError("the model's sidecar records removed rows outside the data; it was not saved by "
                             "expunge forget on this data")
        return removed, "the data matches the fingerprint of the model's training data", mine
    if retained is not None and mine == retained:
        return np.zeros(0, np.int64), "the data is the training data without the rows earlier requests removed", mine
    if not check:
        return np.zeros(0, np.int64), (f"the data's fingerprint {mine} differs from the training data's "
                                       f"{trained_on}; served anyway (--skip-data-check)"), mine
    if mine == original:
        raise ValueError("--data is the model's original training set, but its earlier requests were served on a "
                         "copy without the removed rows; give that copy (or it without the rows removed since)")
    raise ValueError(f"--data is not the data this model was trained on (fingerprint {mine}, the sidecar records "
                     f"{trained_on}); give the training set it was trained on, or --skip-data-check to serve anyway")


def _check_method_name(method: str, args: dict[str, Any]) -> None:
    """Before anything is loaded: the method is registered (or ``auto``) and its own parser accepts ``args`` (the
    tuning budget for ``auto``)."""
    from ..methods import base as registry

    if method == "auto":
        from .auto import check_budget

        check_budget(args)
        return
    if not registry.get(method).forgets:
        raise ValueError(f"method {method!r} forgets nothing (the do-nothing baseline an audit must flag); a "
                         "deletion request needs a method that forgets")
    registry.get(method)(**args)


def _method_args(method: str, args: dict[str, Any], task: str, model: nn.Module, exact: bool) -> None:
    """The method exists, fits the task and the model, and its own parser accepts ``args``."""
    from ..methods import base as registry

    if exact:
        if method not in ("sisa", "auto"):
            raise ValueError(f"this model is a SISA ensemble, served exactly: use --method sisa or auto, not "
                             f"{method!r}")
        if args:
            raise ValueError(f"exact service of a SISA ensemble takes no --arg; got {sorted(args)}")
        return
    if method == "auto":
        return
    cls = registry.get(method)
    if cls.needs_special_original:
        raise ValueError(f"method {method!r} needs a special original (a SISA ensemble); this model is a "
                         f"{type(model).__name__}")
    if task not in cls.tasks:
        fitting = sorted(n for n, c in registry.registered().items() if task in c.tasks)
        raise ValueError(f"method {method!r} supports {', '.join(cls.tasks)} tasks; the data is {task} (methods "
                         f"for {task}: {', '.join(fitting)})")
    cls(**args)


def _for_generator(model: nn.Module, data: DataFile | None) -> None:
    """An image generator trains on labelled images made ready for it (``expunge.data.for_generation``: pixels in
    [-1, 1], the generator's size); images loaded from files are made ready the same way."""
    from ..data.datasets import task_of
    from ..gen.base import is_generative

    if data is None or not is_generative(model) or task_of(data.dataset) != "classification":
        return
    from ..data import for_generation

    base, _ = resolve(data.dataset)
    size = int(model.image_shape[-1])
    data.dataset = for_generation(data.dataset, size=None if tuple(base.x.shape[-2:]) == (size, size) else size)


def _subset(dataset: Dataset, rows: np.ndarray) -> Subset:
    return Subset(dataset, [int(r) for r in rows])


def prepare(model: Any, data: Any, request: Any, *, method: str, args: dict[str, Any] | None = None, seed: int = 0,
            evidence: str = "none", out_dir: str | os.PathLike, recipe: Any = None, arch: str | None = None,
            arch_args: dict[str, Any] | None = None, ledger: str | os.PathLike | None = None,
            key: str | os.PathLike | None = None, test: Any = None, oracles: int | None = None,
            check_data: bool = True, data_options: DataOptions | None = None,
            test_options: DataOptions | None = None) -> _Plan:
    """Check every input of :func:`serve` without doing any work; ValueError/TypeError in one line."""
    from ..audit.result import TIER1_REFERENCES
    from ..data.datasets import task_of
    from ..provenance import provenance
    from .exact import is_sisa

    if not isinstance(method, str) or not method:
        raise TypeError(f"method must be a method name or 'auto'; got {method!r}")
    if evidence not in EVIDENCE:
        raise ValueError(f"--evidence {evidence!r} is not allowed; expected {', '.join(EVIDENCE)}")
    seed = _parse_int(seed, "--seed", 0)
    if oracles is not None and evidence != "tier1":
        raise ValueError(f"--oracles sets the oracles of --evidence tier1; the evidence is {evidence}")
    k = _parse_int(TIER1_REFERENCES if oracles is None else oracles, "--oracles", 3)
    args = dict(args or {})
    _check_method_name(method, args)
    if evidence == "tier1" and test is None:
        raise ValueError("--evidence tier1 needs --test FILE: examples no model trained on are the attack's "
                         "non-members")
    if isinstance(recipe, (str, os.PathLike)):
        recipe = read_recipe(recipe)
    elif recipe is not None and not isinstance(recipe, dict):
        raise TypeError(f"recipe must be a path or a mapping of training settings; got {type(recipe).__name__}")
    out = check_out_dir(out_dir)
    ledger_path, ledger_dir = _check_ledger(Path(ledger) if ledger is not None else None)
    key_path = None
    if key is not None:
        key_path = Path(key).expanduser()
        if not key_path.is_file():
            raise ValueError(f"--key {key_path}: no such file (an Ed25519 private key in PEM)")
        if ledger_path is None:
            raise ValueError("--key signs the ledger entry; it needs a ledger (drop --no-ledger)")
        from .ledger import load_private_key

        try:
            load_private_key(key_path)
        except ValueError as e:
            raise ValueError(f"--key: {e}") from None
    if isinstance(model, nn.Module):
        if arch is not None or arch_args is not None:
            raise ValueError("arch= and arch_args= apply to a model file; the model is given as a module")
        import copy

        loaded = LoadedModel(copy.deepcopy(model), None, {})     # the caller's module is never changed
    else:
        loaded = load_original(model, arch=arch, arch_args=arch_args)
    tokenizer = getattr(loaded.model, "tokenizer", None)
    datafile = _as_datafile(data, "--data", data_options, tokenizer)
    testfile = _as_datafile(test, "--test", test_options or data_options, tokenizer) if test is not None else None
    for held in (datafile, testfile):
        _for_generator(loaded.model, held)
    task = task_of(datafile.dataset)
    from ..api import check_outputs

    check_outputs(loaded.model, datafile.dataset)
    if testfile is not None:
        if task_of(testfile.dataset) != task:
            raise ValueError(f"--test is {task_of(testfile.dataset)} data but --data is {task}")
        check_outputs(loaded.model, testfile.dataset)
    removed_before, note, frame = _check_data(loaded, datafile, check_data)
    parsed = request if isinstance(request, Request) else parse_request(request, datafile)
    again = np.intersect1d(parsed.indices, removed_before)
    if again.size:
        raise ValueError(f"request {parsed.expr!r} names {again.size} row(s) an earlier request already removed "
                         f"from this model (rows {again[:5].tolist()}); a row is forgotten once")
    left = len(datafile) - len(removed_before) - len(parsed.indices)
    if left <= 0:
        raise ValueError(f"request {parsed.expr!r} removes every row still in the training data; nothing would be "
                         "left to retain")
    exact = is_sisa(loaded.model)
    _method_args(method, args, task, loaded.model, exact)
    recipe = recipe or provenance(loaded.model).recipe
    needs_recipe = not exact and (evidence != "none" or method in ("retrain", "auto"))
    if needs_recipe and recipe is None:
        why = f"--evidence {evidence} retrains oracles" if evidence != "none" else f"--method {method} retrains"
        raise ValueError(f"{why} with the recipe that trained the model, and the sidecar records none; give it "
                         "with --recipe FILE (YAML or JSON: epochs, lr, batch_size, ...)")
    if exact and evidence != "none":
        raise ValueError("a SISA ensemble is served exactly: the result is, by construction, its shards retrained "
                         "without the rows, so no oracle is trained (use --evidence none)")
    if evidence == "tier1":
        if task != "classification":
            raise ValueError(f"--evidence tier1 attacks classifiers (LiRA on the class confidence); the data is "
                             f"{task} (use --evidence oracle)")
        if testfile is not None and len(testfile) < MIN_TEST_ROWS:
            raise ValueError(f"--evidence tier1 needs at least {MIN_TEST_ROWS} --test rows (the attack's non-members:"
                             f" 1% FPR is one false alarm in 100); the test data has {len(testfile)}")
    budget = {}
    if method == "auto" and not exact:
        from .auto import TASKS as AUTO_TASKS, check_budget

        if task not in AUTO_TASKS:
            raise ValueError(f"--method auto chooses among methods for {' and '.join(AUTO_TASKS)} data; the data "
                             f"is {task}: name a method")
        check_budget(args)
        budget, args = args, {}
    plan = _Plan(loaded, datafile, testfile, parsed, removed_before, method, args, evidence, recipe, out,
                 ledger_path, key_path, seed, k, exact, budget, note, frame)
    if not exact and method != "auto":
        from ..methods import base as registry
        from ..methods.base import check_request

        forget, retain = _sets(plan)
        check_request(_with_recipe(loaded.model, recipe), forget, retain, registry.get(method)(**args))
    if ledger_dir is not None:        # the default ledger's directory, made once every check has passed
        ledger_dir.mkdir(mode=0o700, exist_ok=True)
    return plan


def _current_rows(plan: _Plan) -> np.ndarray:
    """Rows of the data still in the training set before this request."""
    keep = np.ones(len(plan.data), dtype=bool)
    keep[plan.removed_before] = False
    return np.flatnonzero(keep)


def _sets(plan: _Plan) -> tuple[Subset, Subset]:
    keep = np.ones(len(plan.data), dtype=bool)
    keep[plan.removed_before] = False
    keep[plan.request.indices] = False
    return _subset(plan.data.dataset, plan.request.indices), _subset(plan.data.dataset, np.flatnonzero(keep))


def _with_recipe(model: nn.Module, recipe: dict[str, Any] | None) -> nn.Module:
    """``model`` carrying ``recipe`` as the recipe that trained it (what retrain and the oracles read)."""
    from ..provenance import provenance, stamp

    if recipe is not None and provenance(model).recipe != recipe:
        stamp(model, recipe=dict(recipe))
    return model


# ---------------------------------------------------------------------------------------------- serving
def serve(model: Any, data: Any, request: Any, *, method: str, args: dict[str, Any] | None = None, seed: int = 0,
          evidence: str = "none", out_dir: str | os.PathLike, recipe: Any = None, arch: str | None = None,
          arch_args: dict[str, Any] | None = None, ledger: str | os.PathLike | None = None,
          key: str | os.PathLike | None = None, test: Any = None, oracles: int | None = None,
          check_data: bool = True, data_options: DataOptions | None = None,
          test_options: DataOptions | None = None, on_message: Callable[[str], None] | None = None) -> ForgetResult:
    """Serve deletion request ``request`` on ``model`` (a model file or directory, or a module) trained on ``data``.

    ``method``: a registered method or ``auto`` (``args`` are then the tuning budget handed to
    :func:`expunge.deletion.auto.choose_method`); ``evidence``: ``none``, ``oracle`` or ``tier1`` (``oracles``
    oracles, default 16, and ``test`` data as the attack's non-members); ``recipe``: the recipe that trained the
    model (a YAML/JSON file or a mapping; default: the sidecar's); ``arch``/``arch_args``: the user's class
    (``module:Class``) and its constructor arguments; ``ledger``: the SQLite ledger to append the certificate to
    (None: none), ``key``: an Ed25519 private key signing the entry. See the module docstring for what is written.
    """
    say = on_message or (lambda _msg: None)
    plan = prepare(model, data, request, method=method, args=args, seed=seed, evidence=evidence, out_dir=out_dir,
                   recipe=recipe, arch=arch, arch_args=arch_args, ledger=ledger, key=key, test=test,
                   oracles=oracles, check_data=check_data, data_options=data_options, test_options=test_options)
    return execute(plan, say)


@dataclass
class BatchResult:
    """What :func:`serve_batch` wrote: one :class:`ForgetResult` per request, in order, and the summary file."""

    steps: list[ForgetResult]
    summary_path: Path


def serve_batch(model: Any, data: Any, requests: list[str], *, out_dir: str | os.PathLike,
                on_message: Callable[[str], None] | None = None, **kw: Any) -> BatchResult:
    """Serve ``requests`` one after another, each on the model the previous one wrote (``out_dir/01``,
    ``out_dir/02``, ...; every step certified, and chained in the ledger), and write ``out_dir/batch.json``: per
    step the request, its id, the headline and the scores, so that with ``evidence="oracle"`` (each step's oracle is
    retrained without every request so far) it shows how the model drifts over the stream, as MUSE's sustainability
    does. Every request is parsed, and checked to be disjoint from the others, and the first step is checked in full
    before any work; the other keywords are :func:`serve`'s. A step that fails leaves the earlier steps served."""
    from ..modelio import atomic_write

    say = on_message or (lambda _msg: None)
    if isinstance(requests, str) or not requests or not all(isinstance(r, str) for r in requests):
        raise ValueError("a batch is a non-empty list of request expressions")
    if isinstance(model, nn.Module):
        raise TypeError("a batch is served from a model file (each step loads the one the previous step wrote); "
                        "serve a model given as a module one request at a time")
    out = check_out_dir(out_dir)
    first = prepare(model, data, requests[0], out_dir=out / "01", **kw)
    rows = [first.request.indices]
    for k, expr in enumerate(requests[1:], 2):
        try:
            rows.append(parse_request(expr, first.data).indices)
        except ValueError as e:
            raise ValueError(f"request {k} of the batch: {e}") from None
    seen = np.concatenate(rows)
    if len(np.unique(seen)) != len(seen):
        raise ValueError("the batch's requests overlap; each row is forgotten once (make the requests disjoint)")
    if len(seen) + len(first.removed_before) >= len(first.data):
        raise ValueError("the batch's requests together remove every row; nothing would be left to retain")
    steps: list[ForgetResult] = []
    for k, expr in enumerate(requests, 1):
        say(f"batch step {k}/{len(requests)}: {expr}")
        if k == 1:
            result = execute(first, say)
        else:
            later = {key: v for key, v in kw.items() if key not in ("data_options", "test_options", "test")}
            result = serve(steps[-1].model_path, first.data, expr, out_dir=out / f"{k:02d}", on_message=say,
                           test=first.test, **later)
        steps.append(result)
    summary = {"requests": list(requests), "steps": [
        {"step": k, "request": requests[k - 1], "request_id": s.request_id,
         "previous_request": s.previous_request, "method": s.method, "headline": s.headline,
         "scores": s.evidence.get("numbers", {})} for k, s in enumerate(steps, 1)]}
    path = out / "batch.json"
    atomic_write(path, json.dumps(summary, indent=2, default=str).encode())
    return BatchResult(steps, path)


def execute(plan: _Plan, say: Callable[[str], None] = lambda _msg: None) -> ForgetResult:
    """Do the work of a checked plan (see :func:`serve`)."""
    from .. import api

    start = time.perf_counter()
    original = _with_recipe(plan.loaded.model, plan.recipe)
    forget, retain = _sets(plan)
    say(f"request {plan.request.expr}: {plan.request.describe()}; {len(retain)} rows retained")
    choice: dict[str, Any] | None = None
    exact_info: dict[str, Any] | None = None
    method, args = plan.method, dict(plan.args)
    if plan.exact:
        from .exact import serve_exact

        current = _current_rows(plan)
        position = {int(r): i for i, r in enumerate(current)}
        say("SISA ensemble: retraining the affected shards (exact)")
        unlearned, exact_info = serve_exact(original, _subset(plan.data.dataset, current),
                                            [position[int(r)] for r in plan.request.indices], plan.seed)
        if method == "auto":
            choice = {"chosen": "sisa", "reason": "the model is a SISA ensemble: served exactly (its affected shards "
                      "retrained)", "objective": None, "budget": {"methods_tried": ["sisa"]}, "tuning_set": {}}
        method, args = "sisa", {}
    else:
        if method == "auto":
            from .auto import choose_method

            current = _current_rows(plan)
            position = {int(r): i for i, r in enumerate(current)}
            local = Request(plan.request.expr, plan.request.kind,
                            np.asarray([position[int(r)] for r in plan.request.indices], dtype=np.int64),
                            plan.request.detail)
            say("choosing the method (--method auto) on a tuning forget set of the same kind and size")
            method, args, choice = choose_method(original, _subset(plan.data.dataset, current), local,
                                                 budget=dict(plan.budget), seed=plan.seed,
                                                 test=plan.test.dataset if plan.test is not None else None)
            say(f"chose {method} {args}")
        say(f"unlearning with {method}")
        unlearned = api.unlearn(original, forget=forget, retain=retain, method=method, seed=plan.seed, **args)
    say({"none": "no oracle (--evidence none)", "oracle": "retraining one oracle",
         "tier1": f"retraining {plan.oracles} oracles"}[plan.evidence])
    from .report import gather_evidence

    evidence = gather_evidence(plan.evidence, original=original, unlearned=unlearned, forget=forget, retain=retain,
                               test=plan.test.dataset if plan.test is not None else None, seed=plan.seed,
                               oracles=plan.oracles, exact=exact_info)
    wall = time.perf_counter() - start
    return _write_outputs(plan, unlearned, method, args, evidence, choice, exact_info, wall, say)


def _request_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def _input_hash(plan: _Plan, tmp: Path) -> tuple[Path, str]:
    """The input model's file and SHA-256 (a model given as a module is saved into ``tmp`` to hash it)."""
    from ..modelio import save_model
    from .certificate import file_sha256

    path = plan.loaded.path
    if path is None:
        path = tmp / ".input.safetensors"
        save_model(plan.loaded.model, path)
    return path, file_sha256(path)


def _write_outputs(plan: _Plan, unlearned: nn.Module, method: str, args: dict[str, Any], evidence: dict[str, Any],
                   choice: dict[str, Any] | None, exact_info: dict[str, Any] | None, wall: float,
                   say: Callable[[str], None]) -> ForgetResult:
    from ..modelio import save_model
    from .certificate import build_certificate, file_sha256, new_salt, row_digests, write_certificate, write_salt
    from .report import write_report

    out = plan.out_dir
    made = [d for d in [out.parent, *out.parent.parents] if not d.exists()]   # parents created here
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    moved = False
    try:
        request_id = _request_id()
        input_path, input_sha = _input_hash(plan, tmp)
        previous = _previous_request(plan, input_sha)
        removed = np.union1d(plan.removed_before, plan.request.indices).astype(np.int64)
        keep = np.ones(len(plan.data), dtype=bool)
        keep[removed] = False
        deletion = {"request_id": request_id, "request": plan.request.expr, "input_model_sha256": input_sha,
                    "previous_request": previous, "method": method,
                    "trained_on": plan.frame,
                    "retained_fingerprint": fingerprint(_subset(plan.data.dataset, np.flatnonzero(keep))),
                    "removed_rows": removed.tolist(), "exact": plan.exact}
        extra = {"deletion": deletion}
        if plan.loaded.arch is not None:
            extra["arch"] = plan.loaded.arch
        model_dir = _is_directory_model(unlearned)
        model_path = tmp / ("model" if model_dir else MODEL_FILE)
        save_model(unlearned, model_path, extra=extra)
        output_sha = file_sha256(model_path)
        salt = new_salt()
        digests = row_digests(plan.data.dataset, plan.request.indices, salt)
        summary = {k: v for k, v in evidence.items() if k not in ("scores", "details")}
        if choice is not None:
            summary["method_choice"] = _choice_summary(choice)
        cert = build_certificate(request_id=request_id, request=plan.request.expr, row_digests=digests,
                                 salt_hex=salt.hex(), method=method, args=public_args_of(args, method),
                                 seed=plan.seed, input_model=input_path, output_model=model_path, evidence=summary,
                                 wall_seconds=wall, exact=plan.exact, previous_request=previous)
        if plan.loaded.path is None:        # a model given as a module: saved above only to hash it
            input_path.unlink(missing_ok=True)
            input_path.with_suffix(".json").unlink(missing_ok=True)
        report = {"request_id": request_id, "request": plan.request.expr, "rows": plan.request.describe(),
                  "rows_removed": int(len(plan.request.indices)), "method": method, "args": args,
                  "seed": plan.seed, "evidence": evidence, "choice": choice, "exact": exact_info,
                  "data_check": plan.data_note, "input_model_sha256": input_sha, "output_model_sha256": output_sha,
                  "previous_request": previous, "wall_seconds": wall}
        report_md, report_json = write_report(report, tmp)
        cert = _replace_paths(cert, tmp, out)
        cert_json, cert_md = write_certificate(cert, tmp)
        write_salt(salt, tmp)                 # private: the certificate holds only its SHA-256
        if out.exists():
            out.rmdir()                   # checked empty before any work
        os.replace(tmp, out)
        moved = True
        entry = None
        if plan.ledger is not None:
            from .ledger import Ledger

            entry = Ledger(plan.ledger).append(cert, key=plan.key)
            say(f"ledger {plan.ledger}: entry {entry.seq}")
    except BaseException:
        shutil.rmtree(out if moved else tmp, ignore_errors=True)
        for d in made:                 # innermost first; left alone if something else appeared in it
            try:
                d.rmdir()
            except OSError:
                break
        raise
    name = lambda p: out / Path(p).name
    return ForgetResult(out_dir=out, model_path=out / model_path.name, report_path=name(report_md),
                        report_json=name(report_json), certificate_json=name(cert_json),
                        certificate_md=name(cert_md), entry=entry, request_id=request_id, method=method,
                        args=args, exact=plan.exact, headline=evidence["headline"], evidence=evidence,
                        previous_request=previous)


def _choice_summary(choice: dict[str, Any]) -> dict[str, Any]:
    """What the certificate records of ``--method auto``'s choice (the report holds the whole record): that auto
    chose, what, why, among which methods, and on which tuning set."""
    tuning = choice.get("tuning_set") or {}
    return {"chosen_by": "auto", "chosen": choice.get("chosen"), "reason": choice.get("reason"),
            "objective": choice.get("objective"),
            "methods_tried": (choice.get("budget") or {}).get("methods_tried"),
            "tuning_set": {k: tuning.get(k) for k in ("request_kind", "rows", "rows_sha256",
                                                      "disjoint_from_request")}}


def public_args_of(args: dict[str, Any], method: str) -> dict[str, Any]:
    """The method's arguments as recorded: every argument with its value (defaults filled in), as JSON values."""
    from ..methods import base as registry
    from ..methods.base import public_args

    if method == "sisa" or not args and method not in registry.registered():
        return dict(args)
    return public_args(registry.get(method)(**args).args)


def _is_directory_model(model: nn.Module) -> bool:
    from ..lm.models import is_language_model

    return is_language_model(model)


def _previous_request(plan: _Plan, input_sha: str) -> str | None:
    """The request that produced the input model: its ledger entry by the model's hash, else its sidecar's
    record."""
    if plan.ledger is not None and plan.ledger.exists():
        from .ledger import Ledger

        entry = Ledger(plan.ledger).find_by_output_hash(input_sha)
        if entry is not None:
            return entry.request_id
    rid = _previous_deletion(plan.loaded.meta).get("request_id")
    return str(rid) if rid else None


def _replace_paths(value: Any, tmp: Path, out: Path) -> Any:
    """``value`` with every string naming a file under ``tmp`` renamed to the same file under ``out``."""
    if isinstance(value, dict):
        return {k: _replace_paths(v, tmp, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_paths(v, tmp, out) for v in value]
    if isinstance(value, str) and value.startswith(str(tmp)):
        return str(out) + value[len(str(tmp)):]
    return value


__all__ = ["serve", "serve_batch", "BatchResult", "prepare", "execute", "load_data", "load_original", "read_recipe",
           "import_class", "DataFile", "DataOptions", "ForgetResult", "default_ledger", "EVIDENCE"]
