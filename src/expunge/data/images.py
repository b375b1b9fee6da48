"""Image datasets in their standard binary formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10/100 binary.

Nothing is downloaded. Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package
(``apt-get install -y dataset-fashion-mnist``) or from any folder holding its four IDX files. CIFAR is read only
in its binary format; the Python format is pickled and is refused, never unpickled.

Every header is checked against the size of the file before any array is allocated, so a damaged or forged file
fails with one line naming the file and what was wrong.
"""
from __future__ import annotations

import gzip
import os
import zlib
from math import prod
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset

# --- IDX --------------------------------------------------------------------------------------------------------

#: IDX type code -> big-endian numpy dtype (Y. LeCun's MNIST page)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
# deflate cannot expand one compressed byte into more than about 1032 bytes; a header promising more is forged
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 22


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` compressed or not), in native byte order.

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the data, big-endian,
    in C order. Gzip is recognised by its magic bytes, whatever the file is called.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"IDX file not found: {p}" if not p.exists() else f"{p} is not a file; expected an IDX file")
    try:
        with open(p, "rb") as fh:
            compressed = fh.read(2) == GZIP_MAGIC
        return _read_gzip_idx(p) if compressed else _read_plain_idx(p)
    except OSError as e:
        raise ValueError(f"{p}: cannot be read ({e.strerror or e})") from None


def _read_plain_idx(p: Path) -> np.ndarray:
    with open(p, "rb") as fh:
        dtype, shape, header = _idx_header(fh, p)
        need = prod(shape) * dtype.itemsize
        _check_payload(p, shape, dtype, need, p.stat().st_size - header)
        data = np.fromfile(fh, dtype=dtype, count=prod(shape))
    return _native(data.reshape(shape))


def _read_gzip_idx(p: Path) -> np.ndarray:
    try:
        with gzip.open(p, "rb") as fh:
            dtype, shape, header = _idx_header(fh, p)
            need = prod(shape) * dtype.itemsize
            if need > p.stat().st_size * _MAX_DEFLATE_RATIO:
                raise ValueError(f"{p}: IDX header declares shape {shape} of {dtype.name} ({need:,} bytes), more than "
                                 f"a {p.stat().st_size:,}-byte gzip file can hold; the header or the file is damaged")
            buf = bytearray()
            while len(buf) < need:  # grows with the data actually present, never with the header's promise
                chunk = fh.read(min(_CHUNK, need - len(buf)))
                if not chunk:
                    break
                buf += chunk
            extra = len(fh.read(1)) if len(buf) == need else 0
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{p}: damaged or truncated gzip file ({e})") from None
    _check_payload(p, shape, dtype, need, len(buf) + extra)
    return _native(np.frombuffer(buf, dtype=dtype).reshape(shape))


def _idx_header(fh, p: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = fh.read(4)
    if len(magic) < 4:
        raise ValueError(f"{p}: too short for an IDX header ({len(magic)} bytes; the magic number alone is 4)")
    if magic[:2] != b"\0\0":
        raise ValueError(f"{p}: not an IDX file (the magic number must start with two zero bytes; got {magic.hex()})")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{p}: unsupported IDX type code 0x{code:02X}; allowed: {allowed}")
    if ndim == 0:
        raise ValueError(f"{p}: IDX header declares 0 dimensions; at least 1 is needed")
    dims = fh.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{p}: truncated IDX header: {ndim} dimensions declared but only {len(dims)} of "
                         f"{4 * ndim} dimension bytes present")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return np.dtype(IDX_DTYPES[code]), shape, 4 + 4 * ndim


def _check_payload(p: Path, shape: tuple[int, ...], dtype: np.dtype, need: int, have: int) -> None:
    if have < need:
        raise ValueError(f"{p}: truncated or damaged: the IDX header declares shape {shape} of {dtype.name} "
                         f"({need:,} bytes) but only {have:,} data bytes follow it")
    if have > need:
        raise ValueError(f"{p}: the IDX header declares shape {shape} of {dtype.name} ({need:,} bytes) but more "
                         f"data follows it; the header or the file is damaged")


def _native(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder("="), copy=False)


# --- Fashion-MNIST -------------------------------------------------------------------------------------------

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
                       "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def fashion_mnist(root: str | os.PathLike | None = None, *, flatten: bool = False, standardise: bool = False,
                  subset: int | None = None, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST's 60,000 training and 10,000 test images as ``(train, test)``.

    Images are 1x28x28 float32 in [0, 1] (784 features with ``flatten``), labels int64 in 0..9 with the
    dataset's class names. ``standardise`` subtracts the training pixels' mean and divides by their standard
    deviation (one scalar each, fitted on the whole training set and applied to both splits). ``subset`` keeps a
    seeded random draw of that many training images (in their original order); the test set is always whole.

    ``root`` defaults to ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package
    puts the files; any folder holding the four standard IDX files (gzipped or not) works.
    """
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset must be a positive number of training images or None; got {subset!r}")
    files = _fashion_files(root)
    arrays = {key: load_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{files[f'{split}_images']}: expected uint8 images of shape N x 28 x 28; got "
                             f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{files[f'{split}_labels']}: expected one label per image ({len(images)}); got shape "
                             f"{labels.shape}")
        if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise ValueError(f"{files[f'{split}_labels']}: label {int(labels.max())} out of range 0..9")
    train_x, train_y = arrays["train_images"], arrays["train_labels"]
    if subset is not None:
        if subset > len(train_x):
            raise ValueError(f"subset={subset} exceeds the {len(train_x)} training images")
        keep = np.sort(np.random.default_rng(seed).choice(len(train_x), size=subset, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    scale = _pixel_scale(arrays["train_images"], standardise)
    out = []
    for split, x, y in (("train", train_x, train_y), ("test", arrays["test_images"], arrays["test_labels"])):
        feats = scale(x).reshape(len(x), -1) if flatten else scale(x)[:, None]
        out.append(ArrayDataset(feats, y.astype(np.int64), task="classification",
                                class_names=FASHION_MNIST_CLASSES, name=f"fashion_mnist/{split}"))
    return out[0], out[1]


def _fashion_files(root: str | os.PathLike | None) -> dict[str, Path]:
    base = FASHION_MNIST_ROOT if root is None else Path(root)
    found, missing = {}, []
    for key, stem in FASHION_MNIST_FILES.items():
        path = next((base / name for name in (stem, stem + ".gz") if (base / name).is_file()), None)
        if path is None:
            missing.append(stem + "[.gz]")
        else:
            found[key] = path
    if missing and root is None:
        raise ValueError(f"Fashion-MNIST not found in {base}: install Debian's {FASHION_MNIST_PACKAGE} package "
                         f"(apt-get install -y {FASHION_MNIST_PACKAGE}) or pass root= a folder holding "
                         f"{', '.join(s + '[.gz]' for s in FASHION_MNIST_FILES.values())}")
    if missing:
        raise ValueError(f"Fashion-MNIST files missing in {base}: {', '.join(missing)} (root= must hold the four IDX "
                         f"files; the {FASHION_MNIST_PACKAGE} package puts them in {FASHION_MNIST_ROOT})")
    return found


def _pixel_scale(train_images: np.ndarray, standardise: bool):
    if not standardise:
        return lambda x: x.astype(np.float32) / np.float32(255.0)
    pixels = train_images.astype(np.float64) / 255.0
    mean, std = np.float32(pixels.mean()), np.float32(pixels.std())
    return lambda x: (x.astype(np.float32) / np.float32(255.0) - mean) / std


# --- CIFAR binary --------------------------------------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR = {
    "cifar10": {"label_bytes": 1, "classes": {"fine": 10}, "folder": "cifar-10-batches-bin",
                "train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"],
                "names": {"fine": "batches.meta.txt"}, "python": "cifar-10-batches-py",
                "archive": "cifar-10-binary.tar.gz"},
    "cifar100": {"label_bytes": 2, "classes": {"coarse": 20, "fine": 100}, "folder": "cifar-100-binary",
                 "train": ["train.bin"], "test": ["test.bin"],
                 "names": {"coarse": "coarse_label_names.txt", "fine": "fine_label_names.txt"},
                 "python": "cifar-100-python", "archive": "cifar-100-binary.tar.gz"},
}
_PIXELS = 3 * 32 * 32
_PICKLED_NAMES = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                  "batches.meta", "train", "test", "meta"}
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".p"}


def load_cifar_binary(path: str | os.PathLike, *, kind: str = "cifar10", label: str = "fine"):
    """CIFAR-10 or CIFAR-100 in the binary format, as float32 images 3x32x32 in [0, 1] and int64 labels.

    A folder (the extracted ``cifar-10-batches-bin`` / ``cifar-100-binary``, or the folder holding it) gives
    ``(train, test)``; one ``.bin`` file gives one dataset. Records are 1 label byte + 3072 pixel bytes for
    CIFAR-10, and coarse byte + fine byte + 3072 pixel bytes for CIFAR-100 (``label`` picks which label to use);
    the pixels are the red, then green, then blue 32x32 planes, row by row.

    The Python version of CIFAR is pickled and is refused: expunge never unpickles data files.
    """
    if kind not in _CIFAR:
        raise ValueError(f"unknown CIFAR kind {kind!r}; allowed: {', '.join(_CIFAR)}")
    spec = _CIFAR[kind]
    if label not in spec["classes"]:
        raise ValueError(f"label={label!r} is not available for {kind}; allowed: {', '.join(spec['classes'])}")
    p = Path(path)
    if not p.exists():
        raise ValueError(f"CIFAR path not found: {p}")
    _refuse_pickled_path(p, kind)
    if p.is_file():
        return _cifar_dataset([p], kind, label, name=p.name)
    folder = p / spec["folder"] if (p / spec["folder"]).is_dir() else p
    missing = [n for n in spec["train"] + spec["test"] if not (folder / n).is_file()]
    if missing:
        raise ValueError(_why_missing(folder, kind, missing))
    train = _cifar_dataset([folder / n for n in spec["train"]], kind, label, name=f"{kind}/train")
    test = _cifar_dataset([folder / n for n in spec["test"]], kind, label, name=f"{kind}/test")
    return train, test


def _refuse_pickled_path(p: Path, kind: str) -> None:
    if (p.name in {s["python"] for s in _CIFAR.values()} or
            (p.is_file() and (p.name in _PICKLED_NAMES or p.suffix.lower() in _PICKLE_SUFFIXES))):
        raise ValueError(_pickle_message(p, kind))


def _why_missing(folder: Path, kind: str, missing: list[str]) -> str:
    spec = _CIFAR[kind]
    entries = sorted(f.name for f in folder.iterdir())
    pickled = [n for n in entries if ((folder / n).is_dir() and n in {s["python"] for s in _CIFAR.values()})
               or ((folder / n).is_file() and n in _PICKLED_NAMES)]
    if pickled:
        return _pickle_message(folder / pickled[0], kind)
    for other, other_spec in _CIFAR.items():
        if other != kind and all(n in entries for n in other_spec["train"] + other_spec["test"]):
            return f"{folder} holds {other} binary files ({', '.join(other_spec['train'])}, ...); pass kind={other!r}"
    return (f"{folder}: missing {kind} binary files {', '.join(missing)}; expected "
            f"{', '.join(spec['train'] + spec['test'])} (from {spec['archive']}, extracted)")


def _pickle_message(p: Path, kind: str) -> str:
    spec = _CIFAR[kind]
    return (f"{p} is CIFAR's Python version, which is pickled; expunge never unpickles data files. Use the binary "
            f"version ({spec['archive']}: {', '.join(spec['train'][:1] + spec['test'])}, ...) with "
            f"load_cifar_binary")


def _cifar_dataset(files: list[Path], kind: str, label: str, *, name: str) -> ArrayDataset:
    spec = _CIFAR[kind]
    skip = spec["label_bytes"]
    record = skip + _PIXELS
    column = 0 if label == "coarse" or kind == "cifar10" else 1
    classes = spec["classes"][label]
    xs, ys = [], []
    for f in files:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(2)
        if head[:1] in (b"\x80", b"(", b"}", b"]"):  # pickle opcodes; no label byte is ever this large
            raise ValueError(_pickle_message(f, kind))
        if head == GZIP_MAGIC:
            raise ValueError(f"{f} is gzip-compressed; extract the archive first (tar xzf {spec['archive']})")
        if size == 0 or size % record:
            hint = ""
            for other, other_spec in _CIFAR.items():
                if other != kind and size and size % (other_spec["label_bytes"] + _PIXELS) == 0:
                    hint = f"; it is a whole number of {other} records: pass kind={other!r}"
            raise ValueError(f"{f}: {size:,} bytes is not a whole number of {kind} records ({record} bytes each: "
                             f"{skip} label byte(s) + {_PIXELS} pixel bytes){hint}")
        rows = np.fromfile(f, dtype=np.uint8).reshape(-1, record)
        y = rows[:, column]
        bad = np.flatnonzero(y >= classes)
        if len(bad):
            raise ValueError(f"{f}: record {int(bad[0])} has {label} label {int(y[bad[0]])}; {kind} {label} labels "
                             f"are 0..{classes - 1} (is kind= right?)")
        xs.append(rows[:, skip:].reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64))
    x = np.concatenate(xs).astype(np.float32) / np.float32(255.0)
    return ArrayDataset(x, np.concatenate(ys), task="classification",
                        class_names=_cifar_class_names(files[0].parent, kind, label, classes), name=name)


def _cifar_class_names(folder: Path, kind: str, label: str, classes: int) -> list[str]:
    names_file = folder / _CIFAR[kind]["names"][label]
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == classes:
            return names
    return CIFAR10_CLASSES if kind == "cifar10" else [str(i) for i in range(classes)]
