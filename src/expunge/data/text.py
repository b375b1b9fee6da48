"""Text data for the language task: question/answer pairs or documents, tokenised into padded id tensors.

A :class:`TextDataset` is an :class:`~expunge.data.ArrayDataset` whose task is ``"language"``: ``x`` holds input
ids ``[N, L]`` right-padded with the tokenizer's pad id, ``y`` the labels ``[N, L]`` (the id of every token the
loss covers, -100 elsewhere), so the training loop, ``Subset`` chains, forget requests by group and fingerprints
work on it unchanged. Right padding under causal attention means a real position never attends to padding, so
models are called without an attention mask and losses skip padding through the -100 labels.

Records are dicts. A question/answer pair ``{"question": q, "answer": a, ...}`` is encoded as
``[bos] + tok("Question: {q}\\nAnswer:") + tok(" " + a) + [eos]`` with labels on the answer tokens and the eos only
(the loss covers the answer, as in TOFU); a document ``{"text": t, ...}`` as ``[bos] + tok(t) + [eos]`` with every
token but the bos labelled. Other keys (``paraphrased_answer``, ``perturbed_answers``, ``author``, ...) are kept in
``records`` for the metrics. ``tok(s)`` is ``tokenizer(s, add_special_tokens=False)["input_ids"]``; the bos is
added only when the tokenizer has one.

Files: :func:`load_jsonl` and :func:`load_text_csv` read records from JSON Lines or CSV files.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import ArrayDataset, resolve

PROMPT = "Question: {question}\nAnswer:"
IGNORE = -100                 # label of a token the loss does not cover
MAX_TEXT_CHARS = 1_000_000    # a record's text longer than this is refused (bounded input cost)


def _tok(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def record_kind(record: dict) -> str:
    """``"qa"`` for a question/answer record, ``"document"`` for a text record; ValueError otherwise."""
    if not isinstance(record, dict):
        raise TypeError(f"a text record must be a dict with question/answer or text; got {type(record).__name__}")
    if "question" in record and "answer" in record:
        kind = "qa"
        fields = ("question", "answer")
    elif "text" in record:
        kind = "document"
        fields = ("text",)
    else:
        raise ValueError(f"a text record needs 'question' and 'answer', or 'text'; got keys {sorted(record)}")
    for f in fields:
        if not isinstance(record[f], str):
            raise TypeError(f"record field {f!r} must be a string; got {type(record[f]).__name__}")
        if len(record[f]) > MAX_TEXT_CHARS:
            raise ValueError(f"record field {f!r} has {len(record[f]):,} characters; at most {MAX_TEXT_CHARS:,} "
                             "are allowed")
    if "paraphrased_answer" in record and not isinstance(record["paraphrased_answer"], str):
        raise TypeError(f"record field 'paraphrased_answer' must be a string; got "
                        f"{type(record['paraphrased_answer']).__name__}")
    if "perturbed_answers" in record:
        wrong = record["perturbed_answers"]
        if (not isinstance(wrong, (list, tuple)) or not wrong
                or not all(isinstance(w, str) and w for w in wrong)):
            raise TypeError("record field 'perturbed_answers' must be a non-empty list of non-empty strings "
                            f"(in CSV files, a JSON list); got {wrong!r:.80}")
    return kind


def prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The ids a question's answer is generated after: ``[bos] + tok(PROMPT)``."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + _tok(tokenizer, PROMPT.format(question=question))


def encode(tokenizer: Any, record: dict, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """``(ids, labels)`` of one record (see the module docstring); truncated to ``max_length`` tokens."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token (answers end with it)")
    if record_kind(record) == "qa":
        prompt = prompt_ids(tokenizer, record["question"])
        answer = _tok(tokenizer, " " + record["answer"]) + [tokenizer.eos_token_id]
        ids, labels = prompt + answer, [IGNORE] * len(prompt) + answer
    else:
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        body = _tok(tokenizer, record["text"]) + [tokenizer.eos_token_id]
        ids, labels = bos + body, [IGNORE] * len(bos) + body
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its eos id (labels mark padding either way)."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return int(pid)


class TextDataset(ArrayDataset):
    """Tokenised question/answer pairs or documents (task ``"language"``); see the module docstring.

    ``records``: a list of dicts, all of one kind. ``tokenizer``: a transformers tokenizer (fast or slow) with an
    eos token. ``max_length``: truncate longer sequences (default: none; a sequence longer than
    ``MAX_SEQUENCE`` tokens is refused). ``groups``: one value per record (e.g. an author id) for
    ``split_forget(where=...)``. ``name``: shown in reports.
    """

    MAX_SEQUENCE = 4096

    def __init__(self, records: Sequence[dict], tokenizer: Any, *, max_length: int | None = None, groups: Any = None,
                 name: str | None = None):
        records = list(records)
        if not records:
            raise ValueError("a TextDataset needs at least one record")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"max_length={max_length!r} is not allowed; expected an integer >= 2 or None")
        kinds = {record_kind(r) for r in records}
        if len(kinds) > 1:
            raise ValueError("records mix question/answer pairs and documents; make one TextDataset of each")
        encoded = [encode(tokenizer, r, max_length) for r in records]
        empty = next((i for i, (_, labels) in enumerate(encoded) if all(t == IGNORE for t in labels)), None)
        if empty is not None:
            raise ValueError(f"record {empty + 1} has no token left for the loss (max_length={max_length} cuts its "
                             "answer away); raise max_length")
        longest = max(len(ids) for ids, _ in encoded)
        if longest > self.MAX_SEQUENCE:
            raise ValueError(f"a record has {longest} tokens; at most {self.MAX_SEQUENCE} are allowed (pass "
                             "max_length= to truncate)")
        pid = pad_id(tokenizer)
        x = torch.full((len(records), longest), pid, dtype=torch.long)
        y = torch.full((len(records), longest), IGNORE, dtype=torch.long)
        for i, (ids, labels) in enumerate(encoded):
            x[i, :len(ids)] = torch.tensor(ids)
            y[i, :len(labels)] = torch.tensor(labels)
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(records):
                raise ValueError(f"groups has {len(groups)} entries but there are {len(records)} records")
        self.x, self.y, self.groups, self.task = x, y, groups, "language"
        self.lengths = torch.tensor([len(ids) for ids, _ in encoded])
        self.records, self.tokenizer, self.kind = records, tokenizer, kinds.pop()
        self.max_length = max_length
        self.class_names = None
        self.name = name

    @property
    def num_classes(self) -> None:
        return None

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"TextDataset{label}(n={len(self)}, kind={self.kind}, max_tokens={self.x.shape[1]})"


def text_base(dataset: Dataset) -> tuple[TextDataset, torch.Tensor]:
    """``(base TextDataset, indices)`` of a TextDataset or a Subset chain over one; TypeError otherwise."""
    base, idx = resolve(dataset)
    if not isinstance(base, TextDataset):
        raise TypeError(f"expected text data (an expunge.data.TextDataset or a subset of one); got "
                        f"{type(base).__name__}")
    return base, idx


def records_of(dataset: Dataset) -> list[dict]:
    """The records of ``dataset``'s rows, in its order."""
    base, idx = text_base(dataset)
    return [base.records[int(i)] for i in idx]


def with_answers(dataset: Dataset, answers: Sequence[str], *, name: str | None = None) -> TextDataset:
    """The questions of ``dataset`` (a question/answer TextDataset or a subset of one), in its order and with its
    groups, paired with ``answers`` (one per row): "I don't know" answers, paraphrases, perturbations."""
    base, idx = text_base(dataset)
    if base.kind != "qa":
        raise ValueError("with_answers needs question/answer data; these are documents")
    answers = list(answers)
    if len(answers) != len(idx):
        raise ValueError(f"with_answers: {len(answers)} answers for {len(idx)} questions; give one per question")
    records = [{**base.records[int(i)], "answer": a} for i, a in zip(idx, answers)]
    groups = None if base.groups is None else base.groups[idx.numpy()]
    return TextDataset(records, base.tokenizer, max_length=base.max_length, groups=groups,
                       name=name or (base.name and f"{base.name} (other answers)"))


def load_jsonl(path: str | Path, tokenizer: Any, *, group_key: str | None = None, max_length: int | None = None,
               max_records: int = 10_000_000) -> TextDataset:
    """A TextDataset from a JSON Lines file: one record per line, ``{"question", "answer"}`` or ``{"text"}``
    (other keys kept). ``group_key``: the record key whose values become ``groups`` (e.g. ``"author"``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    records = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if len(records) > max_records:
                raise ValueError(f"{path} has more than {max_records:,} records; split it or raise max_records")
    return _from_records(records, tokenizer, str(path), group_key, max_length)


def load_text_csv(path: str | Path, tokenizer: Any, *, group_key: str | None = None,
                  max_length: int | None = None) -> TextDataset:
    """A TextDataset from a CSV file with a header: columns ``question`` and ``answer``, or ``text``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    for i, r in enumerate(records):
        if isinstance(r.get("perturbed_answers"), str):         # a JSON list in one CSV cell
            try:
                r["perturbed_answers"] = json.loads(r["perturbed_answers"])
            except json.JSONDecodeError:
                raise ValueError(f"{path}, record {i + 1}: perturbed_answers must be a JSON list of strings, e.g. "
                                 '["wrong one", "wrong two"]') from None
    return _from_records(records, tokenizer, str(path), group_key, max_length)


def _from_records(records: list, tokenizer: Any, where: str, group_key: str | None,
                  max_length: int | None) -> TextDataset:
    if not records:
        raise ValueError(f"{where} holds no records")
    for i, r in enumerate(records):
        try:
            record_kind(r)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}, record {i + 1}: {e}") from None
    groups = None
    if group_key is not None:
        missing = next((i for i, r in enumerate(records) if group_key not in r), None)
        if missing is not None:
            raise ValueError(f"{where}, record {missing + 1} has no {group_key!r} (group_key)")
        groups = [r[group_key] for r in records]
    return TextDataset(records, tokenizer, max_length=max_length, groups=groups, name=Path(where).name)
