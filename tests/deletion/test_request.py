"""Deletion requests: every form selects the rows it names; malformed or impossible requests fail in one line."""
from __future__ import annotations

import numpy as np
import pytest

from expunge.data import as_dataset
from expunge.deletion.forget import DataOptions, load_data
from expunge.deletion.request import parse_request, parse_where

CSV = """id,age,city,score,user,label
u1,25,Paris,0.5,17,0
u2,31,Lyon,1.5,17,1
u3,47,Paris,-0.5,18,2
u4,52,Nice,2.0,19,1
u5,60,Lyon,0.0,19,0
u6,38,Paris,1.0,20,2
"""


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text(CSV.replace(",Paris,", ",1,").replace(",Lyon,", ",2,").replace(",Nice,", ",3,"))
    return load_data(path, DataOptions(group="user", id_column="id"))


@pytest.fixture
def cities(tmp_path):
    """The same rows with a text column (cities) as the groups and no id column."""
    path = tmp_path / "cities.csv"
    path.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 0)
                              for line in CSV.strip().splitlines()) + "\n")
    return load_data(path, DataOptions(group="city"))


def one_line_error(expr, data, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_request(expr, data)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_group_is_typed_like_the_group_column(table, cities):
    r = parse_request("group:17", table)
    assert r.kind == "group" and r.indices.tolist() == [0, 1]
    assert r.describe() == "group user == 17 (2 rows)"
    assert parse_request("group:Paris", cities).indices.tolist() == [0, 2, 5]
    one_line_error("group:abc", table, "the group column 'user' holds integers; 'abc' is not one")
    one_line_error("group:99", table, r"group 99 does not occur in the group column 'user' \(4 values: 17, 18")


def test_group_needs_a_group_column():
    data = as_dataset(np.zeros((4, 2)), [0, 1, 0, 1])
    one_line_error("group:1", data, "group: needs a group column; the data has none")


def test_class_by_label_or_name(table, tmp_path):
    assert parse_request("class:1", table).indices.tolist() == [1, 3]
    one_line_error("class:7", table, r"class 7 does not occur in the data")
    one_line_error("class:x", table, r"class 'x' is not a class of the data; expected a label 0..2")
    named = tmp_path / "named.csv"
    named.write_text("f,label\n1,cat\n2,dog\n3,cat\n")
    assert parse_request("class:cat", load_data(named)).indices.tolist() == [0, 2]
    regression = as_dataset(np.zeros((3, 1)), np.array([0.5, 1.5, 2.5]))
    one_line_error("class:1", regression, "class: needs class labels; the data is regression")


def test_ids_from_the_id_column_or_row_indices(table, cities, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# users who asked\nu2\n\nu5\nu2\n")
    r = parse_request(f"ids:{ids}", table)
    assert r.indices.tolist() == [1, 4] and r.describe().endswith("(2 rows)")
    ids.write_text("u2\nu9\n")
    one_line_error(f"ids:{ids}", table, r"1 id\(s\) are not in the id column 'id': \['u9'\]")
    ids.write_text("3\n0\n")
    assert parse_request(f"ids:{ids}", cities).indices.tolist() == [0, 3]       # no id column: row indices
    ids.write_text("6\n")
    one_line_error(f"ids:{ids}", cities, r"row index\(es\) \[6\] are out of range for 6 rows")
    ids.write_text("u1\n")
    one_line_error(f"ids:{ids}", cities, "line 1: 'u1' is not a row index")
    ids.write_text("# nothing\n\n")
    one_line_error(f"ids:{ids}", table, "lists no ids")
    one_line_error(f"ids:{tmp_path / 'missing.txt'}", table, "ids file not found")


def test_integer_id_column(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("uid,x,label\n100,1,0\n200,2,1\n300,3,0\n")
    data = load_data(path, DataOptions(id_column="uid"))
    assert data.dataset.x.shape == (3, 1)             # the id is not a feature
    ids = tmp_path / "ids.txt"
    ids.write_text("300\n")
    assert parse_request(f"ids:{ids}", data).indices.tolist() == [2]
    ids.write_text("abc\n")
    one_line_error(f"ids:{ids}", data, "line 1: the id column 'uid' holds integers; 'abc' is not one")


def test_where_predicates(table, cities):
    rows = lambda expr, data=table: parse_request(f"where:{expr}", data).indices.tolist()
    assert rows("age > 40") == [2, 3, 4]
    assert rows("age >= 31 and age < 52") == [1, 2, 5]
    assert rows("user in (17, 20) or score <= -0.5") == [0, 1, 2, 5]
    assert rows("not (label == 0) and user != 19") == [1, 2, 5]
    assert rows("user not in (17, 18, 19)") == [5]
    assert rows("id == 'u3' or id = \"u4\"") == [2, 3]
    assert rows("city == 'Lyon' and age > 40", cities) == [4]
    assert rows("not not score > 1.2") == [1, 3]
    assert rows("`age` > 59") == [4]
    d = parse_request("where:age > 40", table)
    assert d.describe() == "rows where age > 40 (3 rows)"


def test_where_over_label_and_group_for_array_data():
    data = as_dataset(np.zeros((5, 2)), [0, 1, 2, 1, 0], groups=np.array([7, 7, 8, 9, 9]))
    assert parse_request("where:group == 9 and label == 0", data).indices.tolist() == [4]
    one_line_error("where:age > 3", data, "where: no column 'age'; columns: label, group")


def test_a_subset_is_read_as_its_own_rows():
    from torch.utils.data import Subset
    data = as_dataset(np.zeros((5, 2)), [0, 1, 2, 1, 0], groups=np.array([7, 7, 8, 9, 9]))
    part = Subset(data, [4, 3, 2])      # labels 0, 1, 2; groups 9, 9, 8
    assert parse_request("class:1", part).indices.tolist() == [1]
    assert parse_request("group:9", part).indices.tolist() == [0, 1]


@pytest.mark.parametrize("expr, match", [
    ("where:", "is empty after 'where:'"),
    ("where:age >", "ends where a column name or a value was expected"),
    ("where:age > 3 4", "unexpected 4"),
    ("where:(age > 3", r"expected '\)'"),
    ("where:height > 3", "no column 'height'"),
    ("where:city == 3", "column 'city' holds text; compare it with a quoted string"),
    ("where:age == 'old'", "column 'age' holds numbers; compare it with a number"),
    ("where:__import__('os').system('true')", "cannot read \".system"),
    ("where:age > 3; rm", "cannot read '; rm' at character 8"),
    ("where:age in (user)", "takes numbers or quoted strings, not column names"),
    ("user:17", "is not understood; expected ids:FILE, group:VALUE, class:K or where:PREDICATE"),
    ("17", "is not understood"),
])
def test_malformed_requests_fail_in_one_line(tmp_path, expr, match):
    path = tmp_path / "c.csv"
    path.write_text("age,city,user,label\n30,Paris,17,0\n50,Lyon,18,1\n")
    one_line_error(expr, load_data(path, DataOptions(group="city")), match)


def test_requests_that_select_nothing_or_everything_are_refused(table):
    one_line_error("where:age > 100", table, "selects no rows")
    one_line_error("where:age > 0", table, "selects every one of the 6 rows")
    one_line_error("where:age > 0 or not age > 0", table, "nothing would be left to retain")


def test_predicates_never_evaluate_python():
    mask = parse_where("x == 'open(1)'", {"x": np.array(["open(1)", "b"])}, 2)
    assert mask.tolist() == [True, False]
    with pytest.raises(ValueError, match="cannot read"):
        parse_where("x == 1 + 1", {"x": np.array([2, 3])}, 2)
    with pytest.raises(ValueError, match="nests deeper"):
        parse_where("(" * 60 + "x == 1" + ")" * 60, {"x": np.array([1])}, 1)


@pytest.mark.parametrize("predicate", ["not " * 1000 + "x == 1", "not (" * 30 + "x == 1" + ")" * 30])
def test_deeply_negated_predicates_are_refused_in_one_line(predicate):
    with pytest.raises(ValueError, match="nests deeper than 50 levels") as e:
        parse_where(predicate, {"x": np.array([1, 2])}, 2)
    assert "\n" not in str(e.value)
    assert parse_where("not " * 10 + "x == 1", {"x": np.array([1, 2])}, 2).tolist() == [True, False]
