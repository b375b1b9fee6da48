"""Loaders for users' own files: .npz and .npy arrays, CSV tables with a target column, folders of images by class.

``load_npy`` and ``load_image_folder`` can stream: features are read from the files when a batch needs them
(see ``expunge.data.datasets``)."""
from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import numpy as np

from .datasets import STREAM_ABOVE_BYTES, ArrayDataset, Rows, StreamedDataset, check_finite_rows, streamed

X_KEYS = ("x", "X", "features", "data", "inputs")
Y_KEYS = ("y", "Y", "targets", "target", "labels", "label")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


NPZ_MAGIC = b"PK"                # an .npz is a zip archive of .npy files
NPY_MAGIC = b"\x93NUMPY"


def _existing(path: str | os.PathLike, kind: str, *, directory: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{kind} not found: {p}")
    if directory and not p.is_dir():
        raise ValueError(f"{kind} {p} is a file; expected a directory")
    if not directory and p.is_dir():
        raise ValueError(f"{kind} {p} is a directory; expected a file")
    return p


def _numbers_if_numeric(values: list[str]) -> np.ndarray:
    """A column as integers when every entry is an integer, floats when every entry is a number, else strings."""
    if values and _looks_integer(values):
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except OverflowError:
            pass
    try:
        as_float = np.array([float(v) for v in values], dtype=np.float64)
        if np.isfinite(as_float).all():
            return as_float
    except ValueError:
        pass
    return np.array(values)


def load_npz(path: str | os.PathLike, *, x_key: str | None = None, y_key: str | None = None,
             groups_key: str | None = None, task: str | None = None) -> ArrayDataset:
    """Arrays from an ``.npz`` file. Keys default to the first present of x/X/features/data/inputs and
    y/Y/targets/target/labels/label. Object arrays are refused (they would need unpickling)."""
    p = _existing(path, "npz file")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
    except OSError as e:
        raise ValueError(f"npz file {p} cannot be read ({e.strerror})") from None
    if magic.startswith(NPY_MAGIC):
        raise ValueError(f"{p} is a single .npy array; expected an .npz archive with features and targets "
                         "(np.savez(path, x=..., y=...))")
    if not magic.startswith(NPZ_MAGIC):
        raise ValueError(f"{p} is not an .npz file (no zip signature); expected np.savez(path, x=..., y=...)")
    _check_npz_sizes(p)
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.keys())
            xk = x_key or next((k for k in X_KEYS if k in keys), None)
            yk = y_key or next((k for k in Y_KEYS if k in keys), None)
            for role, key in (("features", xk), ("targets", yk), ("groups", groups_key)):
                if role == "groups" and key is None:
                    continue
                if key not in keys:
                    raise ValueError(f"{p}: no {role} array {key!r} among keys {keys}; pass x_key=, y_key= or "
                                     "groups_key= naming one of them" if key else
                                     f"{p}: cannot find {role} among keys {keys}; pass x_key= and y_key=")
            arrays = {k: npz[k] for k in {xk, yk, groups_key} if k}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{p} is not a readable .npz file ({e})") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"{p} holds object arrays, which would need unpickling; store numeric arrays") from None
        if str(e).startswith(str(p)):
            raise
        raise ValueError(f"{p} is not a readable .npz file ({e})") from None
    for role, key in (("features", xk), ("targets", yk)):
        if not (np.issubdtype(arrays[key].dtype, np.number) or arrays[key].dtype == np.bool_):
            raise ValueError(f"{p}: {role} array {key!r} has dtype {arrays[key].dtype}; expected numbers")
    try:
        return ArrayDataset(arrays[xk], arrays[yk], groups=arrays.get(groups_key) if groups_key else None,
                            task=task, name=p.name)  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{p}: {e}") from None


def _check_npz_sizes(p: Path) -> None:
    """Refuse an archive whose arrays declare more data than they hold, before anything is allocated."""
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                if info.compress_size and info.file_size > 1100 * info.compress_size + 4096:
                    raise ValueError(f"{p}: entry {info.filename} claims {info.file_size:,} bytes from "
                                     f"{info.compress_size:,} compressed; refusing a damaged or forged archive")
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(fh))
                    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if declared > info.file_size:
                        raise ValueError(f"{p}: array {info.filename[:-4]!r} declares shape {shape} "
                                         f"({declared:,} bytes) but holds {info.file_size:,}; the file is damaged")
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{p} is not a readable .npz file ({e})") from None
    except ValueError as e:
        if str(e).startswith(str(p)):
            raise
        raise ValueError(f"{p} is not a readable .npz file ({e})") from None


def load_csv(path: str | os.PathLike, *, target: str, groups: str | None = None, task: str | None = None,
             delimiter: str = ",") -> ArrayDataset:
    """A CSV with a header row: every column but ``target`` (and ``groups``) is a numeric feature.

    Non-numeric targets become class indices in sorted order (names kept as ``class_names``). A ``groups`` column
    comes back as integers when every entry is one, as floats when every entry is a number, else as text, so
    ``split_forget(data, where=lambda user: user == 17)`` selects user 17. For standardised features fitted on a
    training split, see :func:`expunge.data.standardise`."""
    p = _existing(path, "CSV file")
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter=delimiter))
    except UnicodeDecodeError as e:
        raise ValueError(f"CSV file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:
        raise ValueError(f"CSV file {p} cannot be parsed ({e})") from None
    except OSError as e:
        raise ValueError(f"CSV file {p} cannot be read ({e.strerror})") from None
    rows = [r for r in rows if r]                      # blank lines
    if len(rows) < 2:
        raise ValueError(f"{p}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise ValueError(f"{p}: column {dup!r} appears more than once in the header; column names must be unique")
    if target not in header:
        raise ValueError(f"{p}: no target column {target!r}; columns are {header}")
    if groups is not None and groups not in header:
        raise ValueError(f"{p}: no groups column {groups!r}; columns are {header}")
    if groups is not None and groups == target:
        raise ValueError(f"{p}: the groups column {groups!r} is also the target; name another column")
    if len(header) - 1 - (groups is not None) < 1:
        raise ValueError(f"{p}: no feature columns besides the target {target!r}; features are every other column")
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
    g = _numbers_if_numeric([row[gi].strip() for row in body]) if gi is not None else None
    try:
        return ArrayDataset(x, y, groups=g, task=task, class_names=class_names, name=p.name)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None


def _looks_integer(values: list[str]) -> bool:
    return all(v.strip().lstrip("+-").isdigit() for v in values)


def load_image_folder(root: str | os.PathLike, *, size: tuple[int, int] | None = None,
                      grayscale: bool = False, lazy: bool = False, num_workers: int = 0) -> ArrayDataset:
    """Images under ``root/<class name>/*.png`` (one sub-folder per class, classes sorted by name) as float
    tensors in [0, 1] of shape C x H x W. All images are resized to ``size`` (H, W); without it they must share
    the first image's size.

    ``lazy=True`` streams: only the file list and the labels are read now, and each image is decoded when a batch
    needs it (by ``num_workers`` worker processes during training); a file that is unreadable or of another size
    is then reported when it is reached."""
    base = _existing(root, "image folder", directory=True)
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{base}: no class sub-folders; expected {base}/<class>/<image>")
    files, ys = [], []
    for label, cls in enumerate(classes):
        found = sorted(f for f in (base / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        ys += [label] * len(found)
    if not files:
        raise ValueError(f"{base}: no images found (allowed suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    first = _read_image(files[0], size, grayscale)
    labels = np.array(ys, dtype=np.int64)
    if lazy:
        def fetch(ix: np.ndarray) -> np.ndarray:
            return np.stack([_read_image(files[i], size, grayscale, first.shape) for i in ix])
        return StreamedDataset(Rows(fetch, len(files), first.shape), labels, class_names=classes, name=base.name,
                               num_workers=num_workers)
    xs = [first] + [_read_image(f, size, grayscale, first.shape) for f in files[1:]]
    return ArrayDataset(np.stack(xs), labels, class_names=classes, name=base.name)


def _read_image(f: Path, size: tuple[int, int] | None, grayscale: bool,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im = im.convert("L" if grayscale else "RGB")
            if size is not None:
                im = im.resize((size[1], size[0]))
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{f}: not a readable image ({e})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{f}: image shape {arr.shape[1:]} differs from {shape[1:]}; pass size=(H, W)")
    return arr


def load_npy(x_path: str | os.PathLike, y_path: str | os.PathLike, *, in_memory: bool | None = None,
             mmap: bool = False, task: str | None = None, num_workers: int = 0) -> ArrayDataset:
    """Features from the ``.npy`` file ``x_path`` (one row per example) and targets from ``y_path``.

    ``in_memory``: True loads the features; False streams them (a :class:`StreamedDataset`); None (default)
    streams when the features take more than ``STREAM_ABOVE_BYTES`` (1 GiB) as float32. Streamed rows are read
    with positional reads of the file (the OS caches hot pages), which reserve no address space for the whole
    file, so a process under a memory limit can stream a file larger than the limit; ``mmap=True`` reads them
    through ``np.load(mmap_mode='r')`` instead (the whole file mapped). Floating-point features are checked for
    NaN and Inf in one chunked pass. Targets are loaded in memory."""
    xp, yp = _existing(x_path, ".npy file"), _existing(y_path, ".npy file")
    for p in (xp, yp):
        with open(p, "rb") as fh:
            if fh.read(6) != NPY_MAGIC:
                raise ValueError(f"{p} is not a .npy file (no NUMPY header); save arrays with numpy.save")
    reader = NpyRows(xp)
    y = np.load(yp, allow_pickle=False)
    if len(y) != reader.n:
        raise ValueError(f"features and targets differ in length: {reader.n} rows in {xp.name} but {len(y)} in "
                         f"{yp.name}")
    if in_memory is None:
        in_memory = reader.n * int(np.prod(reader.row_shape, dtype=np.int64)) * 4 <= STREAM_ABOVE_BYTES
    if in_memory:
        return ArrayDataset(np.load(xp, allow_pickle=False), y, task=task, name=xp.stem)  # type: ignore[arg-type]
    if mmap:
        return streamed(np.load(xp, mmap_mode="r", allow_pickle=False), y, task=task, name=xp.stem,  # type: ignore
                        num_workers=num_workers)
    rows = Rows(reader.read, reader.n, reader.row_shape)
    if reader.dtype.kind == "f":
        check_finite_rows(rows)
    return StreamedDataset(rows, y, task=task, name=xp.stem, num_workers=num_workers)  # type: ignore[arg-type]


class NpyRows:
    """Rows of a C-ordered ``.npy`` file read by position (``os.pread``), one read per run of consecutive rows; each
    process (DataLoader workers too) opens the file once."""

    def __init__(self, path: Path):
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            try:
                shape, fortran, dtype = header(fh)
            except ValueError as e:
                raise ValueError(f"{path}: unreadable .npy header ({e})") from None
            self.offset = fh.tell()
        if fortran or dtype.hasobject or len(shape) < 1 or shape[0] == 0:
            raise ValueError(f"{path}: streaming needs a non-empty C-ordered numeric array; got shape {shape}, "
                             f"dtype {dtype}, fortran_order={fortran}")
        self.path, self.dtype, self.n, self.row_shape = path, dtype, int(shape[0]), tuple(int(d) for d in shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize
        need = self.offset + self.n * self.row_bytes
        if os.path.getsize(path) < need:
            raise ValueError(f"{path}: the header promises {need} bytes but the file has {os.path.getsize(path)}; "
                             "it is truncated")
        self._fd: tuple[int, int] | None = None

    def _descriptor(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._fd[1]

    def read(self, ix: np.ndarray) -> np.ndarray:
        fd, order = self._descriptor(), np.argsort(ix, kind="stable")
        wanted = ix[order]
        out = np.empty((len(ix), self.row_bytes), dtype=np.uint8)
        start = 0
        while start < len(wanted):              # one read per run of consecutive rows
            end = start + 1
            while end < len(wanted) and wanted[end] == wanted[end - 1] + 1:
                end += 1
            buf = os.pread(fd, (end - start) * self.row_bytes, self.offset + int(wanted[start]) * self.row_bytes)
            out[start:end] = np.frombuffer(buf, dtype=np.uint8).reshape(end - start, self.row_bytes)
            start = end
        if not np.array_equal(wanted, ix):          # back to the order asked for
            rows = np.empty_like(out)
            rows[order] = out
            out = rows
        return out.view(self.dtype).reshape(len(ix), *self.row_shape).astype(np.float32, copy=False)
