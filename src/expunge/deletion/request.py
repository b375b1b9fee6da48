"""Deletion requests: which rows of a model's training data to forget, from a short expression.

Forms (``parse_request(expr, data)``):

- ``ids:FILE``: one row per line of ``FILE`` (blank lines and lines starting with ``#`` are skipped). Where the
  data has an id column (``expunge forget --id-column``), each line is an id of that column (an integer when the
  column holds integers, else text); otherwise each line is a row index, 0 for the first data row.
- ``group:VALUE``: every row whose group (the data's group column, e.g. a user id) equals ``VALUE``, read as the
  column is typed (``group:17`` in a column of integers, ``group:alice`` in a column of text).
- ``class:K``: every row of class label ``K`` (or of the class named ``K`` where the labels have names).
- ``where:PREDICATE``: rows for which a small expression over the data's columns holds: comparisons
  (``== = != < <= > >=``, ``in (a, b)``, ``not in (...)``), ``and``, ``or``, ``not``, parentheses, numbers and
  quoted strings; a column whose name is not a plain identifier is written in backquotes (`` `first name` ``).
  A CSV offers every one of its columns; other data offers ``label`` and ``group``. The expression is parsed here
  and evaluated column-wise with numpy; nothing is handed to Python's ``eval``.

A request that selects no row, names an unknown id, group or class, or selects every row is refused with one line
(ValueError), as is a malformed expression.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

KINDS = ("ids", "group", "class", "where")
MAX_IDS_FILE_BYTES = 256 * 2**20
FORMS = "ids:FILE, group:VALUE, class:K or where:PREDICATE"


@dataclass(frozen=True)
class Request:
    """A parsed request: the expression as given, its kind, the rows it removes (sorted positions in the data)."""

    expr: str
    kind: str
    indices: np.ndarray
    detail: str = ""

    def describe(self) -> str:
        n = len(self.indices)
        return f"{self.detail} ({n} row{'s' if n != 1 else ''})"


# ---------------------------------------------------------------------------------------------- what data offers
def _view(data: Any) -> dict[str, Any]:
    """What a request can read from ``data``: a loaded data file (``.dataset``, ``.columns``, ``.ids``,
    ``.group_column``) or any expunge dataset."""
    from ..data.datasets import groups_of, resolve

    # a loaded data file carries its dataset; a torch Subset's ``.dataset`` is its parent, so a Dataset is read as
    # itself (its own rows, in its own order)
    dataset = data if isinstance(data, torch.utils.data.Dataset) else getattr(data, "dataset", data)
    base, idx = resolve(dataset)
    n = len(idx)
    groups = groups_of(dataset)
    labels = base.y[idx].numpy() if base.task in ("classification", "generation") else None
    columns = getattr(data, "columns", None)
    if columns is None:
        columns = {}
        if labels is not None:
            columns["label"] = labels
        elif base.y.ndim == 1:
            columns["label"] = base.y[idx].numpy()
        if groups is not None:
            columns["group"] = np.asarray(groups)
    return {"n": n, "groups": None if groups is None else np.asarray(groups), "labels": labels, "task": base.task,
            "class_names": base.class_names, "columns": dict(columns), "ids": getattr(data, "ids", None),
            "id_column": getattr(data, "id_column", None), "group_column": getattr(data, "group_column", None)}


def parse_request(expr: str, data: Any) -> Request:
    """The rows of ``data`` that ``expr`` names (see the module docstring); ValueError in one line otherwise."""
    if not isinstance(expr, str):
        raise TypeError(f"a request must be a string such as group:17; got {type(expr).__name__}")
    kind, sep, value = expr.partition(":")
    kind = kind.strip()
    if not sep or kind not in KINDS:
        raise ValueError(f"request {expr!r} is not understood; expected {FORMS}")
    if not value.strip():
        raise ValueError(f"request {expr!r} is empty after '{kind}:'; expected {FORMS}")
    view = _view(data)
    if kind == "ids":
        mask, detail = _by_ids(value.strip(), view)
    elif kind == "group":
        mask, detail = _by_group(value.strip(), view)
    elif kind == "class":
        mask, detail = _by_class(value.strip(), view)
    else:
        mask, detail = _by_predicate(value, view)
    chosen = np.flatnonzero(mask).astype(np.int64)
    if len(chosen) == 0:
        raise ValueError(f"request {expr!r} selects no rows ({detail}); nothing would be forgotten")
    if len(chosen) >= view["n"]:
        raise ValueError(f"request {expr!r} selects every one of the {view['n']} rows ({detail}); nothing would be "
                         "left to retain")
    return Request(expr=expr, kind=kind, indices=chosen, detail=detail)


# ---------------------------------------------------------------------------------------------- ids, groups, classes
def _typed_like(column: np.ndarray, text: str, what: str) -> Any:
    """``text`` as a value of ``column``'s type; ValueError naming ``what`` when it cannot be one."""
    if np.issubdtype(column.dtype, np.integer):
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"{what} holds integers; {text!r} is not one")
        return int(text)
    if np.issubdtype(column.dtype, np.floating):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{what} holds numbers; {text!r} is not one") from None
    if np.issubdtype(column.dtype, np.bool_):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{what} holds true/false values; {text!r} is not one")
        return text.lower() in ("true", "1")
    return text


def _by_ids(value: str, view: dict[str, Any]) -> tuple[np.ndarray, str]:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"ids file not found: {path}" if not path.exists() else
                         f"ids file {path} is a directory; expected a file with one id per line")
    if path.stat().st_size > MAX_IDS_FILE_BYTES:
        raise ValueError(f"ids file {path} is {path.stat().st_size:,} bytes; at most {MAX_IDS_FILE_BYTES:,} allowed")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"ids file {path} is not UTF-8 text (byte {e.start})") from None
    entries = [(no, line.strip()) for no, line in enumerate(lines, 1) if line.strip() and not
               line.strip().startswith("#")]
    if not entries:
        raise ValueError(f"ids file {path} lists no ids (one id or row index per line)")
    n, ids = view["n"], view["ids"]
    mask = np.zeros(n, dtype=bool)
    if ids is None:
        rows = []
        for no, text in entries:
            if not re.fullmatch(r"\d+", text):
                raise ValueError(f"{path}, line {no}: {text!r} is not a row index (the data has no id column, so "
                                 f"each line is a row number 0..{n - 1}; give --id-column to match ids)")
            rows.append(int(text))
        bad = sorted({r for r in rows if r >= n})
        if bad:
            raise ValueError(f"{path}: row index(es) {bad[:5]}{' ...' if len(bad) > 5 else ''} are out of range for "
                             f"{n} rows (allowed 0..{n - 1})")
        mask[rows] = True
        return mask, f"{len(set(rows))} row indices from {path.name}"
    ids = np.asarray(ids)
    where = f"the id column {view['id_column']!r}" if view["id_column"] else "the id column"
    wanted = []
    for no, text in entries:
        try:
            wanted.append(_typed_like(ids, text, where))
        except ValueError as e:
            raise ValueError(f"{path}, line {no}: {e}") from None
    keys = ids.tolist()
    present = set(keys)
    unknown = [w for w in dict.fromkeys(wanted) if w not in present]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) are not in {where}: {unknown[:5]}"
                         f"{' ...' if len(unknown) > 5 else ''}")
    mask = np.isin(ids, np.asarray(list(dict.fromkeys(wanted)), dtype=ids.dtype))
    return mask, f"{len(set(wanted))} ids of {where} from {path.name}"


def _by_group(value: str, view: dict[str, Any]) -> tuple[np.ndarray, str]:
    groups = view["groups"]
    name = view["group_column"]
    if groups is None:
        raise ValueError("group: needs a group column; the data has none (name the CSV column with --group, or use "
                         "ids:, class: or where:)")
    what = f"the group column {name!r}" if name else "the group column"
    wanted = _typed_like(groups, _unquoted(value), what)
    mask = groups == wanted
    if not mask.any():
        raise ValueError(f"group {wanted!r} does not occur in {what} ({_sample_values(groups)})")
    return np.asarray(mask, dtype=bool), f"group {name or 'group'} == {wanted!r}"


def _unquoted(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _sample_values(values: np.ndarray) -> str:
    uniq = np.unique(values)
    shown = ", ".join(repr(v) for v in uniq[:8].tolist())
    return f"{len(uniq)} values: {shown}{', ...' if len(uniq) > 8 else ''}"


def _by_class(value: str, view: dict[str, Any]) -> tuple[np.ndarray, str]:
    labels = view["labels"]
    if labels is None:
        raise ValueError(f"class: needs class labels; the data is {view['task']} (use ids:, group: or where:)")
    names = view["class_names"]
    value = _unquoted(value)
    if re.fullmatch(r"\d+", value):
        k = int(value)
    elif names is not None and value in names:
        k = names.index(value)
    else:
        allowed = f"a label 0..{int(labels.max())}" + (f" or a class name ({', '.join(names[:8])})" if names else "")
        raise ValueError(f"class {value!r} is not a class of the data; expected {allowed}")
    mask = labels == k
    if not mask.any():
        raise ValueError(f"class {k} does not occur in the data (classes present: "
                         f"{sorted(set(labels.tolist()))[:20]})")
    named = f" ({names[k]})" if names is not None and k < len(names) else ""
    return mask, f"class {k}{named}"


# ---------------------------------------------------------------------------------------------- predicates
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
  | (?P<op><=|>=|==|!=|<|>|=)
  | (?P<punct>[(),])
)""", re.VERBOSE)
KEYWORDS = ("and", "or", "not", "in")
MAX_PREDICATE_CHARS = 4096
MAX_DEPTH = 50


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    if len(text) > MAX_PREDICATE_CHARS:
        raise ValueError(f"where: predicate is {len(text)} characters; at most {MAX_PREDICATE_CHARS} are allowed")
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].lstrip()[:12]
            raise ValueError(f"where: cannot read {bad!r} at character {len(text) - len(text[pos:].lstrip()) + 1}; "
                             "allowed: column names, numbers, 'strings', == != < <= > >= in, and, or, not, ( )")
        kind = m.lastgroup
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "number":
            value: Any = float(raw) if re.search(r"[.eE]", raw) else int(raw)
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "name":
            if raw.startswith("`"):
                value = raw[1:-1]
            elif raw.lower() in KEYWORDS:
                kind, value = "keyword", raw.lower()
            else:
                value = raw
        else:
            value = "==" if raw == "=" else raw
        out.append((kind, value, start + 1))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over: or := and ('or' and)*; and := not ('and' not)*; not := 'not' not | atom;
    atom := '(' or ')' | operand OP operand | operand ['not'] 'in' '(' literal, ... ')'."""

    def __init__(self, text: str, columns: dict[str, np.ndarray], n: int):
        self.text, self.tokens, self.i = text, _tokens(text), 0
        self.columns, self.n, self.depth = columns, n, 0

    def parse(self) -> np.ndarray:
        if not self.tokens:
            raise ValueError("where: the predicate is empty")
        mask = self._or()
        if self.i < len(self.tokens):
            kind, value, at = self.tokens[self.i]
            raise ValueError(f"where: unexpected {value!r} at character {at}; join conditions with and / or")
        return mask

    def _peek(self, kind: str, value: Any = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        k, v, _ = self.tokens[self.i]
        return k == kind and (value is None or v == value)

    def _expect(self, kind: str, value: Any, what: str) -> None:
        if not self._peek(kind, value):
            got = f"{self.tokens[self.i][1]!r} at character {self.tokens[self.i][2]}" if self.i < len(self.tokens) \
                else "the end of the predicate"
            raise ValueError(f"where: expected {what}, found {got}")
        self.i += 1

    def _or(self) -> np.ndarray:
        mask = self._and()
        while self._peek("keyword", "or"):
            self.i += 1
            mask = mask | self._and()
        return mask

    def _and(self) -> np.ndarray:
        mask = self._not()
        while self._peek("keyword", "and"):
            self.i += 1
            mask = mask & self._not()
        return mask

    def _not(self) -> np.ndarray:
        if self._peek("keyword", "not"):
            self.i += 1
            self._enter()
            try:
                return ~self._not()
            finally:
                self.depth -= 1
        return self._atom()

    def _enter(self) -> None:
        """One level deeper (a parenthesis, a comparison or a 'not'); refused past MAX_DEPTH levels."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError(f"where: the predicate nests deeper than {MAX_DEPTH} levels (parentheses and 'not's)")

    def _atom(self) -> np.ndarray:
        self._enter()
        try:
            if self._peek("punct", "("):
                self.i += 1
                mask = self._or()
                self._expect("punct", ")", "')'")
                return mask
            left = self._operand()
            negate = False
            if self._peek("keyword", "not"):
                self.i += 1
                negate = True
                if not self._peek("keyword", "in"):
                    self._expect("keyword", "in", "'in' after 'not'")
            if self._peek("keyword", "in"):
                self.i += 1
                mask = self._membership(left)
                return ~mask if negate else mask
            if not self._peek("op"):
                self._expect("op", None, "a comparison (== != < <= > >= or in) after "
                                         f"{left[1] if left[0] == 'column' else repr(left[1])}")
            op = self.tokens[self.i][1]
            self.i += 1
            right = self._operand()
            return self._compare(left, op, right)
        finally:
            self.depth -= 1

    def _operand(self) -> tuple[str, Any]:
        if self.i >= len(self.tokens):
            raise ValueError("where: the predicate ends where a column name or a value was expected")
        kind, value, at = self.tokens[self.i]
        self.i += 1
        if kind == "name":
            if value not in self.columns:
                raise ValueError(f"where: no column {value!r}; columns: {', '.join(self.columns) or 'none'}")
            return "column", value
        if kind in ("number", "string"):
            return "value", value
        raise ValueError(f"where: expected a column name or a value at character {at}, found {value!r}")

    def _values(self, operand: tuple[str, Any]) -> Any:
        return self.columns[operand[1]] if operand[0] == "column" else operand[1]

    @staticmethod
    def _is_text(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype.kind in "US")

    def _compare(self, left: tuple[str, Any], op: str, right: tuple[str, Any]) -> np.ndarray:
        a, b = self._values(left), self._values(right)
        if self._is_text(a) != self._is_text(b):
            if left[0] != "column" and right[0] != "column":
                raise ValueError(f"where: cannot compare {left[1]!r} with {right[1]!r} (text with a number)")
            col = left if left[0] == "column" else right
            other = right if col is left else left
            if col[0] == "column" and self._is_text(self._values(col)):
                raise ValueError(f"where: column {col[1]!r} holds text; compare it with a quoted string such as "
                                 f"{col[1]} == '{other[1]}'")
            raise ValueError(f"where: column {col[1]!r} holds numbers; compare it with a number, not "
                             f"{other[1]!r}")
        ops = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
               ">=": operator.ge}
        result = ops[op](a, b)
        return np.broadcast_to(np.asarray(result, dtype=bool), (self.n,)).copy()

    def _membership(self, left: tuple[str, Any]) -> np.ndarray:
        self._expect("punct", "(", "'(' after 'in'")
        items = []
        while True:
            kind, value = self._operand()
            if kind != "value":
                raise ValueError("where: 'in (...)' takes numbers or quoted strings, not column names")
            items.append(value)
            if self._peek("punct", ","):
                self.i += 1
                continue
            self._expect("punct", ")", "',' or ')' in the list after 'in'")
            break
        mask = np.zeros(self.n, dtype=bool)
        for item in items:
            mask |= self._compare(left, "==", ("value", item))
        return mask


def _by_predicate(text: str, view: dict[str, Any]) -> tuple[np.ndarray, str]:
    mask = _Parser(text, view["columns"], view["n"]).parse()
    return mask, f"rows where {' '.join(text.split())}"


def parse_where(text: str, columns: dict[str, Any], n: int) -> np.ndarray:
    """The boolean mask of a ``where:`` predicate over ``columns`` (name -> array of ``n`` values)."""
    return _Parser(text, {k: np.asarray(v) for k, v in columns.items()}, n).parse()


__all__ = ["Request", "parse_request", "parse_where", "KINDS"]
