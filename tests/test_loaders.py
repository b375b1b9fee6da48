"""Loaders for users' own files, on small files the tests write."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from expunge.data import load_csv, load_image_folder, load_npz


def test_npz(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((5, 3), np.float32), y=np.array([0, 1, 0, 1, 1]), user=np.arange(5))
    d = load_npz(p, groups_key="user")
    assert len(d) == 5 and d.task == "classification" and d.groups.tolist() == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "bad.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="x_key"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="unpickling"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(ValueError, match="not found"):
        load_npz(tmp_path / "missing.npz")


def test_csv_with_named_and_numeric_targets(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,species,user\n1,2,cat,u1\n3,4,dog,u2\n5,6,cat,u1\n")
    d = load_csv(p, target="species", groups="user")
    assert d.x.tolist() == [[1, 2], [3, 4], [5, 6]] and d.y.tolist() == [0, 1, 0]
    assert d.class_names == ["cat", "dog"] and d.groups.tolist() == ["u1", "u2", "u1"]
    p2 = tmp_path / "r.csv"
    p2.write_text("a,price\n1,2.5\n2,3.5\n")
    assert load_csv(p2, target="price").task == "regression"
    with pytest.raises(ValueError, match="no target column"):
        load_csv(p, target="nope")
    p3 = tmp_path / "bad.csv"
    p3.write_text("a,y\nx,1\n")
    with pytest.raises(ValueError, match="line 2"):
        load_csv(p3, target="y")


def test_image_folder(tmp_path):
    for cls, value in (("cats", 0), ("dogs", 255)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_image_folder(tmp_path)
    assert d.x.shape == (6, 3, 6, 5) and d.class_names == ["cats", "dogs"]
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1] and float(d.x[3].min()) == 1.0
    g = load_image_folder(tmp_path, size=(4, 4), grayscale=True)
    assert g.x.shape == (6, 1, 4, 4)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image_folder(tmp_path)


def test_numeric_group_columns_are_numbers(tmp_path):
    import expunge

    p = tmp_path / "g.csv"
    p.write_text("a,label,user,score\n" + "".join(f"{i},{i % 2},{17 if i < 3 else 20 + i},{i}.5\n" for i in range(8)))
    d = load_csv(p, target="label", groups="user")
    assert d.groups.dtype == np.int64 and d.groups[:3].tolist() == [17, 17, 17]
    forget, retain = expunge.split_forget(d, where=lambda user: user == 17)
    assert len(forget) == 3 and len(retain) == 5
    assert load_csv(p, target="label", groups="score").groups.dtype == np.float64
    p.write_text("a,label,user\n1,0,u1\n2,1,17\n")
    assert load_csv(p, target="label", groups="user").groups.tolist() == ["u1", "17"]   # mixed: kept as text


def test_standardise_fits_on_train_and_applies_to_test():
    from expunge.data import as_dataset, standardise

    rng = np.random.default_rng(0)
    train = as_dataset((rng.normal(size=(50, 3)) * [1, 10, 100] + 5).astype(np.float32), rng.normal(size=50) * 20)
    test = as_dataset(np.ones((4, 3), np.float32) * 7, np.zeros(4))
    s_train, s_test = standardise(train, test, targets=True)
    assert np.allclose(s_train.x.mean(0).numpy(), 0, atol=1e-5) and np.allclose(s_train.x.std(0, unbiased=False), 1)
    mean, std = s_train.standardisation["features"]
    assert np.allclose(s_test.x.numpy(), (7 - train.x.mean(0).numpy()) / train.x.std(0, unbiased=False).numpy(),
                       atol=1e-5)
    assert np.allclose(s_test.y.numpy(), (0 - train.y.mean().item()) / train.y.std(unbiased=False).item(), atol=1e-5)
    assert np.allclose(train.x.numpy(), s_train.x.numpy() * std.numpy() + mean.numpy(), atol=1e-4)  # invertible
    with pytest.raises(ValueError, match="regression targets"):
        standardise(as_dataset(np.ones((3, 2)), np.array([0, 1, 0])), targets=True)


def test_loader_errors_name_the_file(tmp_path):
    (tmp_path / "u.csv").write_bytes(b"a,label\n\xff,1\n")
    with pytest.raises(ValueError, match=r"u\.csv is not UTF-8 text"):
        load_csv(tmp_path / "u.csv", target="label")
    with pytest.raises(ValueError, match="is a directory; expected a file"):
        load_csv(tmp_path, target="label")
    (tmp_path / "r.npz").write_bytes(bytes(range(200)))
    with pytest.raises(ValueError, match=r"r\.npz is not an \.npz file \(no zip signature\)"):
        load_npz(tmp_path / "r.npz")
    np.savez(tmp_path / "ok.npz", x=np.ones((3, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="no groups array 'user'"):
        load_npz(tmp_path / "ok.npz", groups_key="user")
