"""Every bad input a new user might give gets one line naming what was wrong and what is allowed.

From the command line: exit code 2, exactly one line on stderr (``error: ...``), nothing on stdout, no traceback,
no file written (no output directory, no run store, no run recorded). From the library: ValueError or TypeError with
a one-line message. Each case is refused at validation, before any training, so the whole table runs in seconds.
"""
from __future__ import annotations

import errno
import time
from collections import namedtuple
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import expunge
from expunge.cli import main
from expunge.data import (as_dataset, load_csv, load_image_folder, load_npz, split_forget, standardise,
                          train_test_split)

BASE = {"data": {"name": "iris"}, "model": {"name": "mlp", "args": {"hidden": [8]}}, "train": {"epochs": 1},
        "forget": {"fraction": 0.1}, "method": "finetune", "args": {"epochs": 1}}
DROP = object()


def config(**changes: Any) -> str:
    """BASE with top-level keys replaced (``DROP`` removes one), as YAML."""
    raw = {k: v for k, v in {**BASE, **changes}.items() if v is not DROP}
    return yaml.safe_dump(raw, sort_keys=False)


def data_config(source: dict[str, Any], **changes: Any) -> str:
    return config(data=source, **changes)


CSV = "a,b,label,user\n" + "".join(f"{i % 7}.5,{(i * 3) % 5},{i % 3},{10 + i % 4}\n" for i in range(30))
LAUGHS = ("data: {name: iris}\nforget: {fraction: 0.1}\nl0: &a0 [x, x, x, x, x, x, x, x, x]\n"
          + "".join(f"l{i + 1}: &a{i + 1} [{', '.join([f'*a{i}'] * 9)}]\n" for i in range(9)))


def npz(**arrays: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        np.savez(path, **arrays)
    return write


def forged_npz(path: Path) -> None:
    """An archive whose features declare 10^12 float32 values while holding a few bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.zeros(3, np.int64))
        zf.writestr("y.npy", y.getvalue())


def images(spec: dict[str, list[tuple[int, int]]], broken: bool = False) -> Callable[[Path], None]:
    """A folder with one sub-folder per class holding images of the given (height, width)."""
    def write(path: Path) -> None:
        path.mkdir()
        for cls, shapes in spec.items():
            (path / cls).mkdir()
            for i, (h, w) in enumerate(shapes):
                Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(path / cls / f"{i}.png")
        if broken:
            (path / next(iter(spec)) / "broken.png").write_bytes(b"not an image at all")
    return write


def mkdir(path: Path) -> None:
    path.mkdir()


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("expunge.cli.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))


def no_write_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr("expunge.cli.tempfile.mkstemp", refuse)


def no_gpu(monkeypatch) -> None:
    """This machine as one without CUDA or MPS, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


RUN = ["run", "c.yaml"]

# (id, files to write first {name: text | bytes | writer(path)}, argv, expected part of the message[, patch])
CLI_CASES: list[tuple] = [
    # -- the config file itself
    ("config-missing", {}, ["run", "none.yaml"], "config file not found"),
    ("config-is-directory", {"c.yaml": mkdir}, RUN, "is a directory; expected a YAML file"),
    ("config-not-utf8", {"c.yaml": b"\xff\xfe\x00bad"}, RUN, "is not UTF-8 text"),
    ("config-invalid-yaml", {"c.yaml": "data: {name: iris\nforget: ["}, RUN, "is not valid YAML"),
    ("config-a-list", {"c.yaml": "- 1\n- 2\n"}, RUN, "expected a mapping of settings; got list"),
    ("config-empty", {"c.yaml": ""}, RUN, "config file c.yaml is empty; expected a mapping of settings"),
    ("config-billion-laughs", {"c.yaml": LAUGHS}, RUN, "expands to more than 100,000 values"),
    ("config-deep-flow", {"c.yaml": "data: " + "[" * 100_000 + "]" * 100_000}, RUN, "nested more than 64 levels"),
    ("config-deep-block", {"c.yaml": "data:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200))}, RUN,
     "nested more than 64 levels"),
    ("config-deep-dashes", {"c.yaml": "- " * 100_000 + "x"}, RUN, "nested more than 64 levels"),
    ("config-too-big", {"c.yaml": "# " + "x" * 1_100_000}, RUN, "at most 1,000,000 are allowed"),
    ("config-unknown-key", {"c.yaml": config(colour="red")}, RUN, "config error at colour: unknown key"),
    ("config-no-data", {"c.yaml": config(data=DROP)}, RUN, "config error at data: is required"),
    ("config-no-forget", {"c.yaml": config(forget=DROP)}, RUN, "config error at forget: is required"),
    ("config-name-dotdot", {"c.yaml": config(name="../../escape")}, RUN, "config error at name"),
    ("config-name-slash", {"c.yaml": config(name="a/b")}, RUN, "no '/', no '..'"),
    ("config-name-hidden", {"c.yaml": config(name=".hidden")}, RUN, "starting with a letter or digit"),
    ("config-name-number", {"c.yaml": config(name=5)}, RUN, "config error at name"),
    ("config-out-number", {"c.yaml": config(out=5)}, RUN, "config error at out: expected a directory path"),
    ("seed-negative", {"c.yaml": config(seed=-1)}, RUN, "config error at seed: expected an integer >= 0"),
    ("seed-text", {"c.yaml": config(seed="zero")}, RUN, "config error at seed"),
    ("seed-bool", {"c.yaml": config(seed=True)}, RUN, "config error at seed"),
    ("seed-float", {"c.yaml": config(seed=1.5)}, RUN, "config error at seed"),
    # -- data section
    ("data-not-mapping", {"c.yaml": config(data="iris")}, RUN, "config error at data: expected a mapping"),
    ("data-two-sources", {"c.yaml": config(data={"name": "iris", "csv": "d.csv"})}, RUN, "give exactly one of"),
    ("data-no-source", {"c.yaml": config(data={"test_fraction": 0.2})}, RUN, "give exactly one of"),
    ("data-unknown-builtin", {"c.yaml": config(data={"name": "cifar100"})}, RUN, "unknown built-in dataset"),
    ("data-unknown-key", {"c.yaml": config(data={"name": "iris", "colour": 1})}, RUN, "config error at data.colour"),
    ("data-test-fraction-0", {"c.yaml": config(data={"name": "iris", "test_fraction": 0})}, RUN,
     "strictly between 0 and 1"),
    ("data-test-fraction-1", {"c.yaml": config(data={"name": "iris", "test_fraction": 1})}, RUN,
     "strictly between 0 and 1"),
    ("data-test-fraction-text", {"c.yaml": config(data={"name": "iris", "test_fraction": "a fifth"})}, RUN,
     "config error at data.test_fraction"),
    ("data-args-not-mapping", {"c.yaml": config(data={"name": "iris", "args": [1]})}, RUN,
     "config error at data.args"),
    ("data-args-unknown", {"c.yaml": config(data={"name": "classification", "args": {"colour": 1}})}, RUN,
     "config error at data.args.colour: built-in dataset 'classification' takes no argument 'colour'; allowed: n"),
    ("data-args-huge", {"c.yaml": config(data={"name": "classification", "args": {"n": 10**6, "features": 10**6}})},
     RUN, "at most 50,000,000 are allowed"),
    ("data-args-type", {"c.yaml": config(data={"name": "friedman", "args": {"noise": "loud"}})}, RUN,
     "config error at data.args.noise"),
    ("data-standardise-bogus", {"c.yaml": config(data={"name": "iris", "standardise": "always"})}, RUN,
     "config error at data.standardise: expected one of none, features, targets, both"),
    ("data-standardise-targets-classification", {"c.yaml": config(data={"name": "iris", "standardise": "targets"})},
     RUN, "applies to regression targets; the data is classification"),
    ("data-target-with-builtin", {"c.yaml": config(data={"name": "iris", "target": "label"})}, RUN,
     "config error at data.target"),
    ("data-task-bogus", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "label", "task": "ranking"})},
     RUN, "config error at data.task: expected classification or regression"),
    ("data-size-with-csv", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "label", "size": [8, 8]})},
     RUN, "config error at data.size: applies to data.images only"),
    ("data-grayscale-text", {"im": images({"a": [(4, 4)] * 3, "b": [(4, 4)] * 3}),
                             "c.yaml": data_config({"images": "im", "grayscale": "yes please"})}, RUN,
     "config error at data.grayscale"),
    ("data-size-zero", {"im": images({"a": [(4, 4)] * 3, "b": [(4, 4)] * 3}),
                        "c.yaml": data_config({"images": "im", "size": [0, 4]})}, RUN,
     "config error at data.size: expected [height, width]"),
    ("data-npz-missing", {"c.yaml": data_config({"npz": "none.npz"})}, RUN, "config error at data.npz: file not found"),
    ("data-csv-missing", {"c.yaml": data_config({"csv": "none.csv", "target": "y"})}, RUN, "file not found"),
    ("data-csv-no-target-key", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv"})}, RUN,
     "config error at data.target"),
    # -- CSV files
    ("csv-is-directory", {"d.csv": mkdir, "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "is a directory; expected a file"),
    ("csv-not-utf8", {"d.csv": b"a,label\n\xff\xfe,1\n", "c.yaml": data_config({"csv": "d.csv", "target": "label"})},
     RUN, "d.csv is not UTF-8 text"),
    ("csv-empty", {"d.csv": "", "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "needs a header row and at least one data row"),
    ("csv-header-only", {"d.csv": "a,label\n", "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "needs a header row and at least one data row"),
    ("csv-no-target-column", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "species"})}, RUN,
     "no target column 'species'; columns are"),
    ("csv-no-groups-column", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "label",
                                                                   "groups": "person"})}, RUN,
     "no groups column 'person'"),
    ("csv-groups-is-target", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "label",
                                                                   "groups": "label"})}, RUN, "is also the target"),
    ("csv-duplicate-column", {"d.csv": "a,a,label\n1,2,0\n3,4,1\n",
                              "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "column 'a' appears more than once"),
    ("csv-ragged-row", {"d.csv": "a,b,label\n1,2,0\n3,1\n", "c.yaml": data_config({"csv": "d.csv", "target": "label"})},
     RUN, "line 3 has 2 fields, the header has 3"),
    ("csv-text-feature", {"d.csv": "a,label\n1,0\nfour,1\n",
                          "c.yaml": data_config({"csv": "d.csv", "target": "label"})},
     RUN, "line 3, column 'a': 'four' is not a number"),
    ("csv-nan-feature", {"d.csv": "a,label\n1,0\nnan,1\n", "c.yaml": data_config({"csv": "d.csv", "target": "label"})},
     RUN, "features contain NaN or Inf"),
    ("csv-only-target", {"d.csv": "label\n0\n1\n", "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "no feature columns besides the target"),
    ("csv-label-ten-million", {"d.csv": "a,label\n1,0\n2,10000000\n3,1\n4,0\n5,1\n",
                               "c.yaml": data_config({"csv": "d.csv", "target": "label", "test_fraction": 0.2})},
     RUN, "at most 100,000 outputs are allowed"),
    ("csv-negative-label", {"d.csv": "a,label\n1,0\n2,-1\n3,1\n4,0\n5,1\n",
                            "c.yaml": data_config({"csv": "d.csv", "target": "label"})}, RUN,
     "class labels must be >= 0"),
    ("csv-fractional-classes", {"d.csv": "a,label\n1,0.5\n2,1.5\n3,1\n4,0\n5,1\n",
                                "c.yaml": data_config({"csv": "d.csv", "target": "label",
                                                       "task": "classification"})}, RUN,
     "classification targets must be whole numbers"),
    ("csv-text-regression", {"d.csv": "a,label\n1,cat\n2,dog\n",
                             "c.yaml": data_config({"csv": "d.csv", "target": "label", "task": "regression"})}, RUN,
     "is not numeric but task='regression'"),
    ("csv-group-absent", {"d.csv": CSV, "c.yaml": data_config({"csv": "d.csv", "target": "label", "groups": "user"},
                                                              forget={"groups": [99]})}, RUN,
     "no rows with group 99; the data's groups include 10, 11"),
    ("csv-group-text-for-numbers", {"d.csv": CSV,
                                    "c.yaml": data_config({"csv": "d.csv", "target": "label", "groups": "user"},
                                                          forget={"groups": ["alice"]})}, RUN,
     "'alice' is not a number, but the data's groups are numbers"),
    ("forget-groups-without-groups", {"c.yaml": config(forget={"groups": [17]})}, RUN,
     "forget.groups needs per-row groups in the data"),
    # -- npz files
    ("npz-random-bytes", {"d.npz": bytes(range(256)) * 4, "c.yaml": data_config({"npz": "d.npz"})}, RUN,
     "is not an .npz file (no zip signature)"),
    ("npz-is-npy", {"d.npz": lambda p: np.save(open(p, "wb"), np.ones(3)), "c.yaml": data_config({"npz": "d.npz"})},
     RUN, "is a single .npy array"),
    ("npz-truncated", {"d.npz": b"PK\x03\x04" + b"\x00" * 40, "c.yaml": data_config({"npz": "d.npz"})}, RUN,
     "is not a readable .npz file"),
    ("npz-no-keys", {"d.npz": npz(a=np.ones(3)), "c.yaml": data_config({"npz": "d.npz"})}, RUN,
     "cannot find features among keys ['a']"),
    ("npz-object-arrays", {"d.npz": npz(x=np.array([{"a": 1}], dtype=object), y=np.array([0])),
                           "c.yaml": data_config({"npz": "d.npz"})}, RUN, "object arrays, which would need unpickling"),
    ("npz-text-features", {"d.npz": npz(x=np.array([["a"], ["b"]]), y=np.array([0, 1])),
                           "c.yaml": data_config({"npz": "d.npz"})}, RUN, "has dtype <U1; expected numbers"),
    ("npz-length-mismatch", {"d.npz": npz(x=np.ones((5, 2)), y=np.array([0, 1])),
                             "c.yaml": data_config({"npz": "d.npz"})}, RUN, "5 rows of x but 2 of y"),
    ("npz-forged-header", {"d.npz": forged_npz, "c.yaml": data_config({"npz": "d.npz"})}, RUN,
     "declares shape (1000000, 1000000)"),
    ("npz-nan-targets", {"d.npz": npz(x=np.ones((4, 2)), y=np.array([0.0, np.nan, 1.0, 2.0])),
                         "c.yaml": data_config({"npz": "d.npz"})}, RUN, "targets contain NaN or Inf"),
    ("npz-is-directory", {"d.npz": mkdir, "c.yaml": data_config({"npz": "d.npz"})}, RUN,
     "is a directory; expected a file"),
    # -- image folders
    ("images-a-file", {"im": "not a folder", "c.yaml": data_config({"images": "im"})}, RUN,
     "is a file; expected a directory"),
    ("images-no-classes", {"im": mkdir, "c.yaml": data_config({"images": "im"})}, RUN, "no class sub-folders"),
    ("images-none", {"im": lambda p: (p.mkdir(), (p / "a").mkdir()), "c.yaml": data_config({"images": "im"})}, RUN,
     "no images found"),
    ("images-broken", {"im": images({"a": [(4, 4)] * 3, "b": [(4, 4)] * 3}, broken=True),
                       "c.yaml": data_config({"images": "im"})}, RUN, "not a readable image"),
    ("images-mixed-sizes", {"im": images({"a": [(4, 4)] * 3, "b": [(5, 4)] * 3}),
                            "c.yaml": data_config({"images": "im"})}, RUN, "pass size=(H, W)"),
    # -- model
    ("model-unknown", {"c.yaml": config(model={"name": "vgg"})}, RUN, "config error at model.name: unknown model"),
    ("model-unknown-key", {"c.yaml": config(model={"name": "mlp", "depth": 3})}, RUN, "config error at model.depth"),
    ("model-args-not-mapping", {"c.yaml": config(model={"name": "mlp", "args": [8]})}, RUN,
     "config error at model.args"),
    ("model-bad-argument", {"c.yaml": config(model={"name": "mlp", "args": {"colour": 3}})}, RUN,
     "model 'mlp' has no argument 'colour'; allowed: hidden"),
    ("model-hidden-text", {"c.yaml": config(model={"name": "mlp", "args": {"hidden": "wide"}})}, RUN,
     "hidden='wide' is not allowed; expected hidden (a list of layer widths"),
    ("model-hidden-negative", {"c.yaml": config(model={"name": "mlp", "args": {"hidden": [-4]}})}, RUN,
     "hidden=[-4] is not allowed"),
    ("model-dropout", {"c.yaml": config(model={"name": "mlp", "args": {"dropout": 1.5}})}, RUN,
     "dropout=1.5 is not allowed"),
    ("model-too-many-parameters", {"c.yaml": config(model={"name": "mlp", "args": {"hidden": [10**6, 10**6]}})}, RUN,
     "at most 500,000,000 are allowed"),
    ("model-cnn-on-tables", {"c.yaml": config(model={"name": "cnn"})}, RUN, "needs image inputs shaped C x H x W"),
    # -- train section
    ("train-not-mapping", {"c.yaml": config(train=5)}, RUN, "config error at train: expected a mapping"),
    ("train-unknown", {"c.yaml": config(train={"learning_rate": 0.1})}, RUN,
     "config error at train.learning_rate: unknown setting"),
    ("train-lr-negative", {"c.yaml": config(train={"lr": -1})}, RUN, "lr=-1.0 is not allowed; expected a positive"),
    ("train-lr-zero", {"c.yaml": config(train={"lr": 0})}, RUN, "config error at train.lr"),
    ("train-lr-text", {"c.yaml": config(train={"lr": "fast"})}, RUN, "lr='fast' must be a number"),
    ("train-lr-inf", {"c.yaml": "train: {lr: .inf}\n" + config(train=DROP)}, RUN, "config error at train.lr"),
    ("train-epochs-billion", {"c.yaml": config(train={"epochs": 10**9})}, RUN, "expected an integer in 0..10000"),
    ("train-epochs-fraction", {"c.yaml": config(train={"epochs": 2.5})}, RUN, "epochs=2.5 must be an integer"),
    ("train-epochs-negative", {"c.yaml": config(train={"epochs": -3})}, RUN, "expected an integer in 0..10000"),
    ("train-batch-zero", {"c.yaml": config(train={"batch_size": 0})}, RUN, "batch_size=0 is not allowed"),
    ("train-optimizer", {"c.yaml": config(train={"optimizer": "lbfgs"})}, RUN, "expected sgd / adam / adamw"),
    ("train-schedule", {"c.yaml": config(train={"schedule": "exp"})}, RUN, "config error at train.schedule"),
    ("train-momentum-one", {"c.yaml": config(train={"momentum": 1})}, RUN, "a number in [0, 1)"),
    ("train-warmup", {"c.yaml": config(train={"warmup": 1.5})}, RUN, "a fraction in [0, 1)"),
    ("train-loss", {"c.yaml": config(train={"loss": "hinge"})}, RUN, "config error at train.loss"),
    # -- forget section
    ("forget-none", {"c.yaml": config(forget={})}, RUN, "config error at forget: give exactly one of"),
    ("forget-two", {"c.yaml": config(forget={"fraction": 0.1, "classes": [1]})}, RUN, "give exactly one of"),
    ("forget-unknown", {"c.yaml": config(forget={"fraction": 0.1, "rows": 3})}, RUN, "config error at forget.rows"),
    ("forget-fraction-big", {"c.yaml": config(forget={"fraction": 1.5})}, RUN, "strictly between 0 and 1"),
    ("forget-fraction-zero", {"c.yaml": config(forget={"fraction": 0})}, RUN, "strictly between 0 and 1"),
    ("forget-classes-text", {"c.yaml": config(forget={"classes": "three"})}, RUN, "a non-empty list of integers"),
    ("forget-classes-empty", {"c.yaml": config(forget={"classes": []})}, RUN, "a non-empty list of integers"),
    ("forget-class-absent", {"c.yaml": config(forget={"classes": [42]})}, RUN, "do not occur in the data"),
    ("forget-all-classes", {"c.yaml": config(forget={"classes": [0, 1, 2]})}, RUN, "retain"),
    ("forget-indices-out-of-range", {"c.yaml": config(forget={"indices": [100000]})}, RUN, "100000"),
    ("forget-indices-negative", {"c.yaml": config(forget={"indices": [-1]})}, RUN, "-1"),
    ("forget-groups-empty", {"c.yaml": config(forget={"groups": []})}, RUN, "config error at forget.groups"),
    ("forget-seed-negative", {"c.yaml": config(forget={"fraction": 0.1, "seed": -2})}, RUN,
     "config error at forget.seed"),
    # -- method and its arguments
    ("method-unknown", {"c.yaml": config(method="forgetall")}, RUN, "config error at method: unknown method"),
    ("method-number", {"c.yaml": config(method=5)}, RUN, "config error at method: expected a method name"),
    ("args-not-mapping", {"c.yaml": config(args=[1])}, RUN, "config error at args: expected a mapping"),
    ("args-unknown", {"c.yaml": config(args={"nope": 1})}, RUN, "unknown argument(s) ['nope']"),
    ("args-lr-text", {"c.yaml": config(args={"lr": "fast"})}, RUN, "config error at args.lr"),
    ("args-lr-negative", {"c.yaml": config(args={"lr": -0.1})}, RUN, "config error at args.lr"),
    ("args-epochs-billion", {"c.yaml": config(args={"epochs": 10**9})}, RUN, "expected an integer in 0..10000"),
    ("args-optimizer", {"c.yaml": config(args={"optimizer": "rmsprop"})}, RUN, "config error at args.optimizer"),
    ("args-type-list", {"c.yaml": config(args={"epochs": [1, 2]})}, RUN, "config error at args.epochs"),
    ("method-ct-on-mlp", {"c.yaml": config(method="ct", args={})}, RUN, "needs convolution layers"),
    ("method-sisa", {"c.yaml": config(method="sisa", args={})}, RUN, "needs a specially trained original"),
    ("method-blindspot-on-classes", {"c.yaml": config(method="blindspot", args={})}, RUN,
     "supports regression tasks; the data is classification"),
    # -- overrides
    ("override-no-equals", {"c.yaml": config()}, RUN + ["train.lr"], "must look like key=value"),
    ("override-empty-part", {"c.yaml": config()}, RUN + ["train..lr=1"], "has an empty key part"),
    ("override-into-scalar", {"c.yaml": config()}, RUN + ["train.epochs.x=1"],
     "config error at train.epochs: holds the value 1, not a mapping; cannot set train.epochs.x"),
    ("override-deep", {"c.yaml": config()}, RUN + ["args.x=" + "[" * 70 + "]" * 70], "nested more than 64 levels"),
    ("override-unknown", {"c.yaml": config()}, RUN + ["train.speed=3"], "config error at train.speed"),
    ("override-lr-text", {"c.yaml": config()}, RUN + ["args.lr=fast"], "config error at args.lr"),
    ("override-epochs-1e9", {"c.yaml": config()}, RUN + ["args.epochs=1.0e+9"], "expected an integer in 0..10000"),
    # -- where output goes
    ("out-is-file", {"c.yaml": config(), "o": "a file"}, RUN + ["--out", "o"], "--out o is a file"),
    ("out-under-file", {"c.yaml": config(), "o": "a file"}, RUN + ["--out", "o/sub"], "cannot be created: o is a file"),
    ("out-unwritable", {"c.yaml": config()}, RUN + ["--out", "o"], "is not writable", no_write_permission),
    ("out-disk-full", {"c.yaml": config()}, RUN + ["--out", "o"], "MiB free on its disk; at least 50 MiB", disk_full),
    ("config-out-is-file", {"c.yaml": config(out="o"), "o": "x"}, RUN, "output directory o is a file"),
    ("store-is-directory", {"c.yaml": config(), "db": mkdir}, RUN + ["--store", "db"], "run store db is a directory"),
    ("store-not-sqlite", {"c.yaml": config(), "db": b"junk" * 100}, RUN + ["--store", "db"],
     "is not a SQLite database"),
    ("store-under-file", {"c.yaml": config(), "f": "x"}, RUN + ["--store", "f/runs.db"],
     "run store directory f is a file"),
    # -- demo
    ("demo-unknown-method", {}, ["demo", "--methods", "nope"], "unknown method 'nope'; allowed: all,"),
    ("demo-sisa", {}, ["demo", "--methods", "sisa"], "method 'sisa' needs a specially trained original"),
    ("demo-blindspot", {}, ["demo", "--methods", "blindspot"], "unlearns regression models"),
    ("demo-retrain", {}, ["demo", "--methods", "retrain"], "retrain is the oracle"),
    ("demo-ct-on-mlp", {}, ["demo", "--methods", "finetune,ct"], "method 'ct' needs convolution layers"),
    ("demo-duplicate", {}, ["demo", "--methods", "finetune,finetune"], "names 'finetune' twice"),
    ("demo-empty-name", {}, ["demo", "--methods", "finetune,"], "unknown method ''"),
    ("demo-seeds-zero", {}, ["demo", "--seeds", "0"], "seeds must be an integer >= 1"),
    ("demo-seeds-many", {}, ["demo", "--seeds", "1000"], "seeds must be an integer in 1..100"),
    ("demo-epochs-zero", {}, ["demo", "--epochs", "0"], "epochs must be an integer in 1..10000"),
    ("demo-epochs-huge", {}, ["demo", "--epochs", "1000000000"], "epochs must be an integer in 1..10000"),
    ("demo-epochs-text", {}, ["demo", "--epochs", "1e9"], "valid integer"),
    ("demo-model", {}, ["demo", "--model", "vit"], "unknown demo model 'vit'; allowed: mlp, cnn"),
    ("demo-out-is-file", {"o": "x"}, ["demo", "--out", "o"], "--out o is a file"),
    ("demo-store-dir", {"db": mkdir}, ["demo", "--store", "db"], "run store db is a directory"),
    ("demo-disk-full", {}, ["demo"], "MiB free on its disk", disk_full),
    # -- the other commands
    ("report-missing-path", {}, ["report", "results/nowhere"], "results/nowhere: no such directory"),
    ("report-a-file", {"r.json": "{}"}, ["report", "r.json"], "r.json is a file; expected a bench directory"),
    ("report-plain-directory", {"d": mkdir}, ["report", "d"], "is a directory but not a bench directory"),
    ("report-id-without-store", {}, ["report", "abc123"], "no run with id 'abc123' and no such directory"),
    ("runs-show-without-store", {}, ["runs", "show", "abc"], "no run with id 'abc': there is no run store"),
    ("runs-store-not-sqlite", {"db": b"junk" * 10}, ["runs", "--store", "db"], "is not a SQLite database"),
    ("runs-limit-zero", {}, ["runs", "--limit", "0"], "--limit 0 is not allowed"),
    ("unknown-command", {}, ["frobnicate"], "No such command"),
    ("unknown-option", {"c.yaml": config()}, RUN + ["--speed", "3"], "No such option"),
    ("missing-argument", {}, ["run"], "Missing argument"),
    ("audit-missing-config", {}, ["audit", "none.yaml"], "config file not found"),
    ("audit-threads-zero", {"c.yaml": config()}, ["audit", "c.yaml", "--threads", "0"], "--threads 0 is not allowed"),
    ("bench-missing-config", {}, ["bench", "none.yaml"], "not found"),
    # -- devices (this machine's; the GPU cases assume none is visible, as on CI)
    ("demo-device-malformed", {}, ["demo", "--device", "gpu"], "device 'gpu' is not allowed; expected one of auto"),
    ("run-device-absent", {"c.yaml": config()}, RUN + ["--device", "cuda"],
     "device 'cuda' is not available; available: cpu", no_gpu),
    ("audit-device-absent", {"c.yaml": config()}, ["audit", "c.yaml", "--device", "mps"],
     "device 'mps' is not available; available: cpu", no_gpu),
    ("bench-device-absent", {"b.yaml": "name: b\ndata: {name: iris}\nscenarios: [{name: r, fraction: 0.1}]\n"
                                       "methods: {finetune: {epochs: 1}}\n"},
     ["bench", "b.yaml", "--device", "cuda:1"], "device 'cuda:1' is not available; available: cpu", no_gpu),
    ("bench-config-device-malformed", {"b.yaml": "name: b\ndata: {name: iris}\nscenarios: [{name: r, fraction: "
                                                 "0.1}]\nmethods: {finetune: {epochs: 1}}\ndevice: tpu\n"},
     ["bench", "b.yaml"], "config error at device: device 'tpu' is not allowed"),
    ("bench-laughs", {"c.yaml": LAUGHS}, ["bench", "c.yaml"], "expands to more than 100,000 values"),
    ("bench-out-is-file", {"b.yaml": "name: b\ndata: {name: iris}\nscenarios: [{name: r, fraction: 0.1}]\n"
                                     "methods: {finetune: {epochs: 1}}\n", "o": "x"},
     ["bench", "b.yaml", "--out", "o"], "--out o is a file"),
]


def _write(root: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = root / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input_with_one_line(case, tmp_path, monkeypatch, capsys):
    name, files, argv, message, *patch = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPUNGE_STORE", str(tmp_path / "runs.db"))
    _write(tmp_path, files)
    for p in patch:
        p(monkeypatch)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line; got {err!r}"
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"
    assert "Traceback" not in out + err and out == "", f"stdout: {out!r}"
    assert _snapshot(tmp_path) == before, "a refused command wrote files (output, run store or records)"


def test_enough_cases():
    assert len(CLI_CASES) + len(API_CASES) >= 120


# -- the library: ValueError or TypeError with one line ----------------------------------------------------------

def _iris():
    return expunge.data.load_builtin("iris")


def _regression():
    return as_dataset(np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32),
                      np.linspace(0, 50, 20).astype(np.float32))


def _classes():
    return as_dataset(np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32), np.arange(20) % 4)


def _classifier():
    return expunge.model("mlp", _classes(), hidden=[8])


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


API_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("model-label-ten-million", lambda t: expunge.model("mlp", as_dataset(np.zeros((3, 2)), np.array([0, 1, 10**7]))),
     "at most 100,000 outputs"),
    ("model-huge-hidden", lambda t: expunge.model("mlp", _classes(), hidden=[10**5, 10**5, 10**5]),
     "at most 500,000,000 are allowed"),
    ("model-num-outputs-zero", lambda t: expunge.model("mlp", _classes(), num_outputs=0), "num_outputs must be"),
    ("model-unknown", lambda t: expunge.model("transformer", _classes()), "unknown model 'transformer'"),
    ("model-bad-kwarg", lambda t: expunge.model("mlp", _classes(), depth=3), "model 'mlp' has no argument 'depth'"),
    ("model-width-zero", lambda t: expunge.model("cnn", as_dataset(np.zeros((2, 1, 8, 8)), np.array([0, 1])), width=0),
     "width=0 is not allowed"),
    ("train-classifier-on-regression", lambda t: expunge.train(_classifier(), _regression(), epochs=1),
     "the data is regression with 1 target(s) per example but the model has 4 outputs"),
    ("train-too-few-outputs", lambda t: expunge.train(expunge.model("mlp", _classes(), num_outputs=2), _classes()),
     "the data has label 3 but the model has only 2 outputs (labels 0..1)"),
    ("train-epochs-billion", lambda t: expunge.train(_classifier(), _classes(), epochs=10**9),
     "expected an integer in 0..10000"),
    ("train-unknown-setting", lambda t: expunge.train(_classifier(), _classes(), speed=2), "unknown training setting"),
    ("train-not-a-model", lambda t: expunge.train("mlp", _classes()), "model must be a torch nn.Module"),
    ("train-input-shape", lambda t: expunge.train(_classifier(), as_dataset(np.zeros((4, 5)), np.arange(4))),
     "the model cannot take the data's examples of shape (5,)"),
    ("unlearn-unknown-method", lambda t: expunge.unlearn(_classifier(), forget=_classes(), method="nope"),
     "unknown method 'nope'"),
    ("unlearn-unknown-argument", lambda t: expunge.unlearn(_classifier(), forget=_classes(), retain=_classes(),
                                                         method="finetune", speed=1), "unknown argument(s)"),
    ("unlearn-method-not-name", lambda t: expunge.unlearn(_classifier(), forget=_classes(), method=len),
     "method must be a method name"),
    ("unlearn-regression-forget-with-classifier",
     lambda t: expunge.unlearn(_classifier(), forget=_regression(), retain=None, method="gradient_ascent"),
     "the data is regression"),
    ("unlearn-empty-forget", lambda t: expunge.unlearn(_classifier(), forget=torch.utils.data.Subset(_classes(), []),
                                                     method="gradient_ascent"), "the forget set is empty"),
    ("split-fraction", lambda t: split_forget(_classes(), fraction=2.0), "fraction"),
    ("split-absent-class", lambda t: split_forget(_classes(), classes=[9]), "do not occur in the data"),
    ("split-test-fraction", lambda t: train_test_split(_classes(), test_fraction=1.0), "strictly between 0 and 1"),
    ("dataset-lengths", lambda t: as_dataset(np.zeros((3, 2)), np.zeros(2)), "differ in length"),
    ("dataset-nan", lambda t: as_dataset(np.array([[np.nan, 1.0]]), np.array([0])), "contain NaN or Inf"),
    ("dataset-negative-label", lambda t: as_dataset(np.zeros((2, 2)), np.array([0, -3])), "class labels must be >= 0"),
    ("dataset-task", lambda t: as_dataset(np.zeros((2, 2)), np.array([0, 1]), task="ranking"), "unknown task"),
    ("standardise-class-targets", lambda t: standardise(_classes(), targets=True), "applies to regression targets"),
    ("standardise-nothing", lambda t: standardise(_classes(), features=False), "nothing to do"),
    ("standardise-shape", lambda t: standardise(_classes(), as_dataset(np.zeros((2, 5)), np.array([0, 1]))),
     "cannot take statistics fitted on examples of shape (3,)"),
    ("load-csv-directory", lambda t: load_csv(Path(__file__).parent, target="y"), "is a directory; expected a file"),
    ("load-csv-missing", lambda t: load_csv("/nonexistent/file.csv", target="y"), "CSV file not found"),
    ("load-npz-random", lambda t: load_npz(_file(t / "r.npz", bytes(range(256)))), "no zip signature"),
    ("load-npz-empty-file", lambda t: load_npz(_file(t / "e.npz", b"")), "no zip signature"),
    ("load-images-file", lambda t: load_image_folder(__file__), "is a file; expected a directory"),
    ("train-device-malformed", lambda t: expunge.train(_classifier(), _classes(), device="gpu:0"),
     "device 'gpu:0' is not allowed; expected one of auto, cpu, cuda, cuda:N, mps"),
    ("train-device-not-string", lambda t: expunge.train(_classifier(), _classes(), device=0), "device must be a string"),
    ("train-precision-unknown", lambda t: expunge.train(_classifier(), _classes(), precision="fp16"),
     "precision='fp16' is not allowed; expected one of fp32, bf16"),
    ("train-bf16-on-cpu", lambda t: expunge.train(_classifier(), _classes(), device="cpu", precision="bf16"),
     "precision='bf16' needs a CUDA device"),
    ("unlearn-device-cpu-index", lambda t: expunge.unlearn(_classifier(), forget=_classes(), retain=_classes(),
                                                         device="cpu:1"), "device 'cpu:1' is not allowed"),
    ("evaluate-device-malformed", lambda t: expunge.evaluate(_classifier(), forget=_classes(), retain=_classes(),
                                                           device="cuda:x"), "device 'cuda:x' is not allowed"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_library_refuses_bad_input_with_one_line(case, tmp_path):
    name, call, message = case
    with pytest.raises((ValueError, TypeError)) as info:
        call(tmp_path)
    text = str(info.value)
    assert message in text, f"{message!r} not in {text!r}"
    assert "\n" not in text, f"the message is not one line: {text!r}"


def test_npz_missing_groups_key_is_named(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((3, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="no groups array 'user' among keys"):
        load_npz(path, groups_key="user")
    assert len(load_npz(path)) == 3                         # the same file with valid keys loads


# -- bounded cost: small hostile inputs are refused at once -----------------------------------------------------

@pytest.mark.parametrize("argv, files", [
    (RUN, {"c.yaml": LAUGHS}),
    (RUN, {"c.yaml": "data: " + "[" * 100_000 + "]" * 100_000}),
    (RUN + ["args.epochs=1.0e+9"], {"c.yaml": config()}),
    (RUN + ["train.epochs=1.0e+9"], {"c.yaml": config()}),
    (RUN, {"d.csv": "a,label\n1,0\n2,10000000\n3,1\n4,0\n5,1\n",
           "c.yaml": data_config({"csv": "d.csv", "target": "label"})}),
    (RUN, {"d.npz": forged_npz, "c.yaml": data_config({"npz": "d.npz"})}),
], ids=["billion-laughs", "deep-nesting", "args-epochs", "train-epochs", "label-1e7", "forged-npz"])
def test_small_hostile_inputs_are_refused_within_a_second(argv, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPUNGE_STORE", str(tmp_path / "runs.db"))
    _write(tmp_path, files)
    main(["methods"])                                   # imports and the method registry are loaded before timing
    start = time.perf_counter()
    code = main(list(argv))
    elapsed = time.perf_counter() - start
    assert code == 2 and elapsed < 1.0, f"exit code {code} after {elapsed:.2f}s"
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_yaml_numbers_read_as_written():
    from expunge.config import apply_overrides, load_yaml

    assert load_yaml("a: 1e-3\nb: 1.0e+9\nc: 5\nd: .5\ne: 2E2\nf: '1e-3'") == \
        {"a": 0.001, "b": 1e9, "c": 5, "d": 0.5, "e": 200.0, "f": "1e-3"}
    assert apply_overrides({}, ["args.lr=1e-3", "args.name=abc"]) == {"args": {"lr": 0.001, "name": "abc"}}
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}        # what plain YAML 1.1 would have given
