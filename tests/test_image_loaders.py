"""IDX, Fashion-MNIST and CIFAR-binary loaders: byte layouts on files written here, refusals, the real files."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import expunge
from expunge.data import fashion_mnist, load_cifar_binary, load_idx
from expunge.data import images

CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file built by hand from the format's definition."""
    header = b"\0\0" + bytes([code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.dtype(CODES[code]).newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- IDX -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("code", sorted(CODES))
def test_idx_round_trip_for_every_type_code(tmp_path, code, gz):
    rng = np.random.default_rng(code)
    values = rng.integers(-100, 100, size=(3, 4, 5)) if CODES[code] != np.uint8 else rng.integers(0, 256, (3, 4, 5))
    array = values.astype(CODES[code]) * (1.5 if code in (0x0D, 0x0E) else 1)
    array = array.astype(CODES[code])
    path = write(tmp_path / ("a.idx" + (".gz" if gz else "")), idx_bytes(array, code), gz)
    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(CODES[code]) and loaded.dtype.isnative
    assert loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, array)


def test_idx_reads_big_endian_values_written_byte_by_byte(tmp_path):
    # int16, one dimension of 2: 0x0102 = 258 and 0xFFFE = -2
    path = write(tmp_path / "v.idx", b"\0\0\x0b\x01" + b"\0\0\0\x02" + b"\x01\x02\xff\xfe")
    np.testing.assert_array_equal(load_idx(path), np.array([258, -2], dtype=np.int16))
    # gzip is recognised by its content, whatever the name
    path = write(tmp_path / "plain-name", b"\0\0\x08\x02" + b"\0\0\0\x02\0\0\0\x01" + b"\x07\xfa", gz=True)
    np.testing.assert_array_equal(load_idx(path), np.array([[7], [250]], dtype=np.uint8))


def test_idx_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    huge = b"\0\0\x08\x03" + struct.pack(">III", 2**31, 2**31, 2**31) + b"\0" * 16
    one_line_error(lambda: load_idx(write(tmp_path / "huge.idx", huge)), "huge.idx", "truncated", "declares shape")
    one_line_error(lambda: load_idx(write(tmp_path / "huge.idx.gz", huge, gz=True)), "huge.idx.gz",
                   "more than a", "gzip file can hold")


@pytest.mark.parametrize("name, data, fragment", [
    ("empty", b"", "too short for an IDX header"),
    ("text", b"hello, world", "not an IDX file"),
    ("zip", b"PK\x03\x04" + b"\0" * 30, "not an IDX file"),
    ("code", b"\0\0\x0a\x01\0\0\0\x01\x00", "unsupported IDX type code 0x0A"),
    ("nodims", b"\0\0\x08\x00", "0 dimensions"),
    ("header", b"\0\0\x08\x03\0\0\0\x02\0\0", "truncated IDX header"),
    ("data", b"\0\0\x08\x01\0\0\0\x05\x01\x02", "truncated or damaged"),
    ("extra", b"\0\0\x08\x01\0\0\0\x01\x01\x02", "more data follows"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_idx_files_are_refused_in_one_line(tmp_path, name, data, fragment, gz):
    path = write(tmp_path / (name + (".gz" if gz else "")), data, gz)
    one_line_error(lambda: load_idx(path), str(path), fragment)


def test_damaged_gzip_stream_is_refused(tmp_path):
    whole = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32), 0x0C))
    path = write(tmp_path / "cut.idx.gz", whole[: len(whole) // 2])
    one_line_error(lambda: load_idx(path), "cut.idx.gz", "damaged or truncated gzip")
    one_line_error(lambda: load_idx(tmp_path / "absent.idx"), "IDX file not found")
    one_line_error(lambda: load_idx(tmp_path), "is not a file")


# --- Fashion-MNIST from a folder the test writes -------------------------------------------------------------

def write_fashion_folder(root: Path, n_train: int = 30, n_test: int = 10, image_side: int = 28) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (n_train, image_side, 28)).astype(np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, image_side, 28)).astype(np.uint8),
              "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8)}
    root.mkdir(exist_ok=True)
    for i, (key, stem) in enumerate(images.FASHION_MNIST_FILES.items()):
        gz = i % 2 == 0  # a mix of compressed and plain files
        write(root / (stem + (".gz" if gz else "")), idx_bytes(arrays[key], 0x08), gz)
    return arrays


def test_fashion_mnist_from_a_root_folder(tmp_path):
    arrays = write_fashion_folder(tmp_path / "fm")
    train, test = fashion_mnist(tmp_path / "fm")
    assert (len(train), len(test)) == (30, 10)
    assert train.x.shape == (30, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.task == "classification" and train.num_classes == 10
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"
    np.testing.assert_allclose(train.x[:, 0].numpy(), arrays["train_images"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(test.y.numpy(), arrays["test_labels"])

    flat, _ = fashion_mnist(tmp_path / "fm", flatten=True, standardise=True)
    assert flat.x.shape == (30, 784)
    assert abs(float(flat.x.mean())) < 1e-4 and abs(float(flat.x.std()) - 1) < 1e-2

    part, whole_test = fashion_mnist(tmp_path / "fm", subset=12, seed=3)
    again, _ = fashion_mnist(tmp_path / "fm", subset=12, seed=3)
    assert len(part) == 12 and len(whole_test) == 10 and torch.equal(part.x, again.x)
    rows = [int(np.flatnonzero((arrays["train_images"] == (r[0].numpy() * 255).round()).all(axis=(1, 2)))[0])
            for r in part.x]
    assert rows == sorted(rows) and len(set(rows)) == 12          # real training rows, in their original order
    one_line_error(lambda: fashion_mnist(tmp_path / "fm", subset=31), "subset=31 exceeds the 30")
    one_line_error(lambda: fashion_mnist(tmp_path / "fm", subset=0), "subset must be a positive number")


def test_fashion_mnist_missing_files_name_the_package_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "FASHION_MNIST_ROOT", tmp_path / "nowhere")
    one_line_error(fashion_mnist, "dataset-fashion-mnist", "apt-get install -y dataset-fashion-mnist", "root=")
    (tmp_path / "partial").mkdir()
    write(tmp_path / "partial" / "train-images-idx3-ubyte", idx_bytes(np.zeros((1, 28, 28), np.uint8), 0x08))
    one_line_error(lambda: fashion_mnist(tmp_path / "partial"), "t10k-labels-idx1-ubyte[.gz]",
                   "dataset-fashion-mnist")


def test_fashion_mnist_files_of_the_wrong_shape_are_refused(tmp_path):
    write_fashion_folder(tmp_path / "fm", image_side=27)
    one_line_error(lambda: fashion_mnist(tmp_path / "fm"), "train-images-idx3-ubyte", "N x 28 x 28")


# --- Fashion-MNIST, the real files -----------------------------------------------------------------------------

REAL = all(any((images.FASHION_MNIST_ROOT / (stem + ext)).is_file() for ext in ("", ".gz"))
           for stem in images.FASHION_MNIST_FILES.values())
needs_real = pytest.mark.skipif(not REAL, reason=f"Fashion-MNIST absent from {images.FASHION_MNIST_ROOT} "
                                                 "(apt-get install -y dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def real_fashion():
    return fashion_mnist()


@needs_real
def test_real_fashion_mnist_has_its_published_sizes(real_fashion):
    train, test = real_fashion
    assert train.x.shape == (60_000, 1, 28, 28) and test.x.shape == (10_000, 1, 28, 28)
    assert train.num_classes == 10
    assert train.y.bincount().tolist() == [6000] * 10 and test.y.bincount().tolist() == [1000] * 10
    assert 0 <= float(train.x.min()) and float(train.x.max()) == 1.0


@needs_real
def test_a_small_mlp_learns_real_fashion_mnist(real_fashion):
    train, test = real_fashion
    part = Subset(train, range(4000))
    model = expunge.train(expunge.model("mlp", train, hidden=[64]), part, epochs=3, lr=0.05, seed=0)
    with torch.no_grad():
        accuracy = float((model(test.x[:2000]).argmax(1) == test.y[:2000]).float().mean())
    assert accuracy > 0.7, accuracy   # chance is 0.1


# --- CIFAR binary ----------------------------------------------------------------------------------------------

def planes(n: int, offset: int) -> np.ndarray:
    """n images whose R, G and B planes are told apart by value: R = row*32+col, G = 255-that, B = record+offset."""
    grid = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :]) % 256
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for k in range(n):
        out[k, 0], out[k, 1], out[k, 2] = grid, 255 - grid, k + offset
    return out


def cifar_records(labels: list[tuple[int, ...]], pixels: np.ndarray) -> bytes:
    """Label byte(s), then the red plane, the green plane and the blue plane, each row by row."""
    body = b""
    for lab, image in zip(labels, pixels):
        body += bytes(lab) + image[0].tobytes() + image[1].tobytes() + image[2].tobytes()
    return body


def test_cifar10_binary_file_layout_is_read_exactly(tmp_path):
    pixels = planes(3, offset=40)
    data = cifar_records([(9,), (0,), (4,)], pixels)
    path = write(tmp_path / "data_batch_1.bin", data)
    ds = load_cifar_binary(path)
    assert ds.x.shape == (3, 3, 32, 32) and ds.x.dtype == torch.float32
    assert ds.y.tolist() == [9, 0, 4] and ds.num_classes == 10 and ds.class_names[9] == "truck"
    as_bytes = (ds.x * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(as_bytes, pixels)
    # channel-major: byte 1 + 1024*c + 32*row + col of record k is pixel (c, row, col)
    for k, c, row, col in [(0, 0, 0, 1), (0, 0, 1, 0), (1, 1, 31, 30), (2, 2, 5, 6)]:
        assert as_bytes[k, c, row, col] == data[k * 3073 + 1 + 1024 * c + 32 * row + col]
    assert as_bytes[1, 0, 1, 0] == 32 and as_bytes[1, 1, 1, 0] == 223 and as_bytes[2, 2, 0, 0] == 42


def test_cifar10_binary_folder_gives_train_and_test(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        write(folder / f"data_batch_{i}.bin", cifar_records([(i,), (i - 1,)], planes(2, offset=10 * i)))
    write(folder / "test_batch.bin", cifar_records([(7,)], planes(1, offset=99)))
    (folder / "batches.meta.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n\n")
    for where in (folder, tmp_path):  # the extracted folder, or the folder holding it
        train, test = load_cifar_binary(where)
        assert (len(train), len(test)) == (10, 1)
        assert train.y.tolist() == [1, 0, 2, 1, 3, 2, 4, 3, 5, 4] and test.y.tolist() == [7]
        assert float(train.x[9, 2, 0, 0]) * 255 == pytest.approx(51) and train.class_names[3] == "name3"
        assert train.name == "cifar10/train"


def test_cifar100_binary_reads_coarse_and_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    write(folder / "train.bin", cifar_records([(19, 99), (3, 42), (0, 0)], planes(3, offset=1)))
    write(folder / "test.bin", cifar_records([(5, 55)], planes(1, offset=2)))
    fine_train, fine_test = load_cifar_binary(tmp_path, kind="cifar100")
    coarse_train, _ = load_cifar_binary(folder, kind="cifar100", label="coarse")
    assert fine_train.y.tolist() == [99, 42, 0] and fine_test.y.tolist() == [55] and fine_train.num_classes == 100
    assert coarse_train.y.tolist() == [19, 3, 0] and coarse_train.num_classes == 20
    np.testing.assert_array_equal((fine_train.x * 255).round().to(torch.uint8).numpy(), planes(3, offset=1))
    one_line_error(lambda: load_cifar_binary(folder), "holds cifar100 binary files", "kind='cifar100'")
    one_line_error(lambda: load_cifar_binary(folder / "train.bin"), "3073 bytes each",
                   "kind='cifar100'")


def test_bad_cifar_binary_input_is_refused_in_one_line(tmp_path):
    good = planes(1, offset=0)
    one_line_error(lambda: load_cifar_binary(write(tmp_path / "a.bin", cifar_records([(12,)], good))),
                   "record 0 has fine label 12", "0..9")
    one_line_error(lambda: load_cifar_binary(write(tmp_path / "b.bin", b"\x01" * 100)), "not a whole number")
    one_line_error(lambda: load_cifar_binary(write(tmp_path / "c.bin", b"")), "not a whole number")
    one_line_error(lambda: load_cifar_binary(tmp_path / "a.bin", kind="cifar10", label="coarse"),
                   "label='coarse' is not available for cifar10")
    one_line_error(lambda: load_cifar_binary(tmp_path / "a.bin", kind="cifar1000"), "unknown CIFAR kind")
    one_line_error(lambda: load_cifar_binary(tmp_path / "missing"), "CIFAR path not found")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: load_cifar_binary(tmp_path / "empty"), "missing cifar10 binary files", "test_batch.bin")
    archive = write(tmp_path / "cifar-10-binary.tar.gz", b"anything", gz=True)
    one_line_error(lambda: load_cifar_binary(archive), "extract the archive first")


def test_pickled_cifar_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("the loader tried to unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    batch = pickle.dumps({b"labels": [1], b"data": np.zeros((1, 3072), np.uint8)}, protocol=2)
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    write(py / "data_batch_1", batch)
    write(py / "test_batch", batch)
    renamed = write(tmp_path / "data_batch_1.bin", batch)       # a pickle under a binary name
    protocol0 = write(tmp_path / "old.bin", pickle.dumps([1, 2, 3], protocol=0))
    hundred = tmp_path / "cifar-100-python"
    hundred.mkdir()
    write(hundred / "train", batch)
    for target, kind in [(py, "cifar10"), (py / "data_batch_1", "cifar10"), (tmp_path, "cifar10"),
                         (renamed, "cifar10"), (protocol0, "cifar10"), (hundred, "cifar100"),
                         (hundred / "train", "cifar100"), (tmp_path / "x.pkl", "cifar10")]:
        if target.suffix == ".pkl":
            write(target, batch)
        one_line_error(lambda: load_cifar_binary(target, kind=kind), "pickled", "never unpickles", "binary version")
