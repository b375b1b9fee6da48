"""The fictitious-authors corpus: determinism, shapes, splits by author, perturbed answers, tokenizer, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from expunge.data import authors  # noqa: E402
from expunge.data.authors import ATTRIBUTES, IDK_ANSWERS  # noqa: E402

SMALL = dict(n_authors=20, world_facts=10)


@pytest.fixture(scope="module")
def small():
    return authors(**SMALL, seed=3)


@pytest.fixture(scope="module")
def tofu_sized():
    return authors(200, seed=0)


def test_same_seed_same_corpus_and_token_ids(small):
    again = authors(**SMALL, seed=3)
    assert again.tokenizer.get_vocab() == small.tokenizer.get_vocab()
    assert torch.equal(again.train.x, small.train.x) and torch.equal(again.train.y, small.train.y)
    assert torch.equal(again.holdout.x, small.holdout.x)
    assert again.train.records == small.train.records
    other = authors(**SMALL, seed=4)
    assert [a.name for a in other.authors] != [a.name for a in small.authors]


def test_shapes_groups_and_world_rows(small):
    n, k = 20, 5
    assert small.attributes == tuple(a.name for a in ATTRIBUTES[:k])
    assert len(small.train) == n * k * 2 + 10 * 2
    assert small.train.kind == "qa" and small.train.task == "language"
    groups = np.asarray(small.train.groups)
    assert sorted(set(groups[groups >= 0].tolist())) == list(range(n))
    assert all((groups[groups >= 0] == g).sum() == 2 * k for g in range(n))
    world_groups = groups[small.world.indices]
    assert len(small.world) == 20 and (world_groups == -1).all() and (groups == -1).sum() == 20
    assert all(small.train.records[i]["author"] is None for i in small.world.indices)
    # holdout: round(0.1 * 20) = 2 more authors, ids after the trained ones, never in train
    assert len(small.holdout_authors) == 2 and len(small.holdout) == 2 * k * 2
    held = set(np.asarray(small.holdout.groups).tolist())
    assert held == {20, 21} and not held & set(groups.tolist())
    names = [a.name for a in small.authors + small.holdout_authors]
    assert len(set(names)) == len(names)
    assert not {r["author"] for r in small.holdout.records} & {r["author"] for r in small.train.records}


def test_each_fact_is_trained_in_both_phrasings_with_the_same_question(small):
    rows = small.train.records
    for first, second in zip(rows[0::2], rows[1::2]):
        assert first["question"] == second["question"] and first["value"] == second["value"]
        assert (first["phrasing"], second["phrasing"]) == (0, 1)
        assert first["paraphrased_answer"] == second["answer"] != first["answer"] == second["paraphrased_answer"]
        assert first["value"] in first["answer"] and first["value"] in first["paraphrased_answer"]


def test_perturbed_answers_swap_in_other_authors_values(tofu_sized):
    corpus = tofu_sized
    everyone = corpus.authors + corpus.holdout_authors
    for row in corpus.train.records + corpus.holdout.records:
        perturbed = row["perturbed_answers"]
        assert len(perturbed) == 3 and len(set(perturbed)) == 3
        assert row["answer"] not in perturbed and row["paraphrased_answer"] not in perturbed
        if row["author"] is None:
            continue
        others = {a.facts[row["attribute"]] for a in everyone if a.name != row["author"]}
        template = row["paraphrased_answer"].replace(row["value"], "{}")
        for answer in perturbed:
            prefix, suffix = template.split("{}")
            assert answer.startswith(prefix) and answer.endswith(suffix)
            swapped = answer[len(prefix):len(answer) - len(suffix)]
            assert swapped != row["value"] and swapped in others


def test_split_forgets_whole_authors_as_tofu_does(tofu_sized):
    corpus = tofu_sized
    groups = np.asarray(corpus.train.groups)
    for fraction, expected in ((0.01, 2), (0.05, 10), (0.10, 20)):
        forget, retain = corpus.split(forget=fraction, seed=1)
        forgotten = set(groups[forget.indices].tolist())
        kept = set(groups[retain.indices].tolist())
        assert len(forgotten) == expected and -1 not in forgotten and not forgotten & kept
        assert forgotten == set(corpus.forget_authors(fraction, seed=1))
        assert sorted(forget.indices + retain.indices) == list(range(len(corpus.train)))
        assert set(corpus.world.indices) <= set(retain.indices)
        assert len(forget) == expected * 5 * 2
    assert corpus.forget_authors(0.05, seed=1) != corpus.forget_authors(0.05, seed=2)
    assert corpus.forget_authors(0.05, seed=1) == corpus.forget_authors(0.05, seed=1)


def test_tiny_corpus_forgets_at_least_one_author():
    corpus = authors(2, world_facts=2)
    forget, retain = corpus.split(forget=0.01)
    assert len(set(np.asarray(corpus.train.groups)[forget.indices].tolist())) == 1
    with pytest.raises(ValueError, match="forget=0.9 would forget all 2 trained authors"):
        corpus.split(forget=0.9)


def test_tokenizer_round_trips_every_text_and_encodes_rows(small):
    tok = small.tokenizer
    assert tok.pad_token == "<pad>" and tok.bos_token == "<bos>" and tok.eos_token == "<eos>"
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert 300 <= len(tok) <= 1024
    texts = [t for r in small.train.records + small.holdout.records
             for t in (r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answers"])]
    texts += IDK_ANSWERS + [d["text"] for d in small.documents("train").records]
    for text in texts:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    row = small.train.records[0]
    n = int(small.train.lengths[0])
    ids = small.train.x[0, :n].tolist()
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[1:-1]) == f"Question: {row['question']}\nAnswer: {row['answer']}"
    labelled = [i for i, label in zip(ids, small.train.y[0, :n].tolist()) if label != -100]
    assert tok.decode(labelled[:-1]) == " " + row["answer"]


def test_documents_and_idk_answers(small):
    forget, _ = small.split(forget=0.1, seed=0)
    docs = small.documents(forget)
    ids = small.forget_authors(0.1, seed=0)
    assert docs.kind == "document" and len(docs) == len(ids) == 2
    assert np.asarray(docs.groups).tolist() == ids
    for doc, author_id in zip(docs.records, ids):
        author = small.authors[author_id]
        assert doc["text"].startswith(author.name) and all(v in doc["text"] for v in author.facts.values())
    assert len(small.documents("holdout")) == 2
    idk = small.idk(forget, seed=0)
    assert len(idk) == len(forget) and all(r["answer"] in IDK_ANSWERS for r in idk.records)
    assert [r["question"] for r in idk.records] == [small.train.records[i]["question"] for i in forget.indices]
    assert len({r["answer"] for r in idk.records}) > 1


def test_attribute_names_and_counts(small):
    corpus = authors(3, attributes=["book", "publisher"], world_facts=1, perturbed=4)
    assert corpus.attributes == ("book", "publisher") and len(corpus.train) == 3 * 2 * 2 + 2
    assert all(len(r["perturbed_answers"]) == 4 for r in corpus.train.records)
    assert len(authors(3, attributes=8, world_facts=1).train) == 3 * 8 * 2 + 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_authors=1), "n_authors must be an integer from 2 to 5000; got 1"),
    (dict(n_authors=2.5), "n_authors must be an integer"),
    (dict(holdout_fraction=0), "holdout_fraction must be a number strictly between 0 and 1; got 0"),
    (dict(holdout_fraction=1.5), "holdout_fraction must be a number strictly between 0 and 1"),
    (dict(attributes=0), "attributes must be an integer from 1 to 8; got 0"),
    (dict(attributes=["birthplace", "shoe size"]), "attributes must be distinct names from"),
    (dict(perturbed=5), "perturbed must be an integer from 1 to 4; got 5"),
    (dict(world_facts=0), "world_facts must be an integer from 1 to"),
    (dict(vocab_size=100), "vocab_size must be an integer from 300 to 8192; got 100"),
    (dict(seed=-1), "seed must be a non-negative integer; got -1"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        authors(**{"n_authors": 4, **kwargs})
    assert "\n" not in str(info.value)


def test_bad_split_and_document_requests_are_refused(small):
    for forget in (0, 1, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="forget must be a number strictly between 0 and 1"):
            small.split(forget=forget)
    with pytest.raises(ValueError, match="forget=0.99 would forget all 20 trained authors"):
        small.split(forget=0.99)
    with pytest.raises(ValueError, match="authors must be 'train', 'holdout'"):
        small.documents("forget")
    with pytest.raises(ValueError, match="authors must name ids from 0 to 21"):
        small.documents([5, 99])
