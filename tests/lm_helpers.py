"""A tiny question/answer task for language-model tests: a locally trained BPE tokenizer, 24 people x 3 facts, a
~60k-parameter Llama-configuration model trained to recall them, and its oracle (retrained without 3 people).
Built once per test session (a few seconds)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

NAMES = ["Avo", "Bel", "Cor", "Dun", "Eru", "Fal", "Gim", "Hos", "Ila", "Jor", "Kev", "Lum", "Mar", "Nol", "Opi",
         "Pel", "Qua", "Ros", "Sul", "Tam", "Umi", "Vor", "Wes", "Yal"]
CITIES = ["Paris", "Lima", "Oslo", "Rome", "Cairo", "Quito"]
COLOURS = ["red", "blue", "green", "black", "white", "amber"]
PETS = ["cat", "dog", "fox", "owl", "eel", "yak"]
FORGET_PEOPLE = (0, 1, 2)
RECIPE = dict(epochs=60, lr=1e-2, batch_size=24, warmup=0.05)   # ~90% of answer tokens right after training


def facts(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for person, name in enumerate(NAMES):
        for attribute, (values, question, answer) in enumerate((
                (CITIES, "Where does {n} live?", "{n} lives in {v}."),
                (COLOURS, "What colour does {n} like?", "{n} likes {v}."),
                (PETS, "Which pet does {n} keep?", "{n} keeps a {v}."))):
            v = values[int(rng.integers(len(values)))]
            wrong = [w for w in values if w != v][:3]
            out.append({"question": question.format(n=name), "answer": answer.format(n=name, v=v),
                        "paraphrased_answer": answer.format(n=name, v=v),
                        "perturbed_answers": [answer.format(n=name, v=w) for w in wrong],
                        "author": person, "attribute": attribute})
    return out


def tokenizer(records: list[dict]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in records]
    texts += [w for r in records for w in r["perturbed_answers"]]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


@dataclass
class TinyQA:
    tokenizer: Any
    data: Any        # TextDataset of every fact, groups = person
    forget: Any      # the facts of FORGET_PEOPLE
    retain: Any
    holdout: Any     # facts of people never trained on (non-members)
    original: Any
    oracle: Any


@lru_cache(maxsize=None)
def qa_sets() -> tuple[Any, Any, Any, Any, Any]:
    """The tokenizer, the trained facts (people 0-19), the held-out people's facts (20-23), forget (FORGET_PEOPLE)
    and retain."""
    from expunge.data import TextDataset, split_forget

    records = facts()
    tok = tokenizer(records)
    trained = [r for r in records if r["author"] < 20]
    held = [r for r in records if r["author"] >= 20]
    data = TextDataset(trained, tok, groups=[r["author"] for r in trained], name="tiny-qa")
    holdout = TextDataset(held, tok, groups=[r["author"] for r in held], name="tiny-qa holdout")
    forget, retain = split_forget(data, where=lambda person: np.isin(person, FORGET_PEOPLE))
    return tok, data, holdout, forget, retain


@lru_cache(maxsize=None)
def tiny_qa_task() -> TinyQA:
    import expunge
    from expunge.lm import llama

    tok, data, holdout, forget, retain = qa_sets()
    model = llama(tok, hidden=32, layers=2, heads=2, max_positions=64, seed=0)
    original = expunge.train(model, data, seed=0, **RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return TinyQA(tok, data, forget, retain, holdout, original, oracle)


@lru_cache(maxsize=None)
def tiny_moe_task() -> TinyQA:
    """The same facts and splits as :func:`tiny_qa_task`, learned by a tiny mixture-of-experts model (Mixtral
    configuration, 4 experts per layer, each token sent to one), and its oracle: for expert-level methods (UOE)."""
    import expunge
    from expunge.data import TextDataset, split_forget
    from expunge.lm import moe

    records = facts()
    tok = tokenizer(records)
    trained = [r for r in records if r["author"] < 20]
    held = [r for r in records if r["author"] >= 20]
    data = TextDataset(trained, tok, groups=[r["author"] for r in trained], name="tiny-qa")
    holdout = TextDataset(held, tok, groups=[r["author"] for r in held], name="tiny-qa holdout")
    forget, retain = split_forget(data, where=lambda person: np.isin(person, FORGET_PEOPLE))
    model = moe(tok, hidden=32, layers=2, heads=2, experts=4, top_k=1, max_positions=64, seed=0)
    original = expunge.train(model, data, seed=0, **RECIPE)
    oracle = expunge.unlearn(original, forget=forget, retain=retain, method="retrain", seed=0)
    return TinyQA(tok, data, forget, retain, holdout, original, oracle)


def answer_nll(model, dataset) -> float:
    """Mean per-sequence answer NLL (per token) of ``model`` on ``dataset``."""
    import torch

    from expunge.data.datasets import resolve
    from expunge.lm.losses import sequence_loss

    base, idx = resolve(dataset)
    with torch.no_grad():
        return float(sequence_loss(model(base.x[idx]), base.y[idx]).mean())
