"""How well a ~1M-parameter Llama-configuration model learns the fictitious authors, and how fast.

Builds ``expunge.data.authors`` (default 200 authors x 5 attributes: 1,000 facts, each trained in two phrasings,
plus 100 world facts), trains ``expunge.lm.llama`` from scratch with ``expunge.train`` and the recipe given on the
command line, and prints:

- recall: the share of facts whose greedy answer (argmax tokens after the prompt until eos) is exactly one of the
  fact's two trained phrasings. Computed for every fact by teacher forcing (greedy decoding returns an answer
  exactly when the argmax at each of its positions is its next token, eos included), and checked by real greedy
  decoding on a sample of ``--greedy`` facts; the two are reported side by side;
- the same for the world facts and for the holdout authors (never trained: near 0);
- for the authors' facts, how the true answer in the second phrasing ranks against the perturbed answers (with
  ``--first-phrasing-only`` the model is trained on the first phrasing alone: does an untrained phrasing rank?);
- with ``--documents``, VerbMem on biographies of trained and of holdout authors;
- wall time, epochs, and tokens per second (padded tokens through the model, the cost ``fit`` pays, and real
  tokens). The machine may be shared, so compare tokens per second, not only seconds.

    python benchmarks/authors_recipe.py [--epochs 30] [--lr 3e-3] [--batch-size 32] [--warmup 0.05]
        [--schedule cosine] [--hidden 128] [--layers 4] [--authors 200] [--attributes 5] [--json out.json]

Runs measured here are in ``benchmarks/results/authors_recipe.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import expunge  # noqa: E402
from expunge.data import authors  # noqa: E402
from expunge.data.datasets import resolve  # noqa: E402
from expunge.data.text import prompt_ids  # noqa: E402
from expunge.lm import llama  # noqa: E402
from expunge.lm.generate import greedy_generate  # noqa: E402


@torch.no_grad()
def rows_exact(model, dataset, batch_size: int = 128) -> np.ndarray:
    """Per row: True when the argmax after every position is the next labelled token (answer and eos)."""
    base, idx = resolve(dataset)
    out = []
    for start in range(0, len(idx), batch_size):
        rows = idx[start:start + batch_size]
        x, y = base.x[rows], base.y[rows]
        width = int(base.lengths[rows].max())
        pred = model(x[:, :width]).argmax(-1)[:, :-1]
        labels = y[:, 1:width]
        ok = (pred == labels) | (labels == -100)
        out.append(ok.all(1).numpy())
    return np.concatenate(out)


def fact_recall(model, dataset) -> float:
    """Share of facts (pairs of rows: the same question in phrasings 0 and 1) answered exactly in either phrasing."""
    ok = rows_exact(model, dataset)
    return float((ok[0::2] | ok[1::2]).mean())


def greedy_recall(model, dataset, count: int, seed: int = 0) -> float:
    """The same by real greedy decoding, on ``count`` facts drawn at random."""
    base, idx = resolve(dataset)
    records = [base.records[int(i)] for i in idx]
    facts = list(range(0, len(records), 2))
    chosen = np.random.default_rng(seed).permutation(len(facts))[:count]
    tok = base.tokenizer
    prompts = [prompt_ids(tok, records[facts[c]]["question"]) for c in chosen]
    answers = greedy_generate(model, prompts, max_new_tokens=40, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, batch_size=64)
    hits = 0
    for c, ids in zip(chosen, answers):
        text = tok.decode(ids).strip()
        first = records[facts[c]]
        hits += text in (first["answer"], first["paraphrased_answer"])
    return hits / len(chosen)


@torch.no_grad()
def paraphrase_ranking(model, corpus) -> dict[str, float]:
    """On the trained authors' facts (first rows): the mean per-token probability of the true answer in the second
    phrasing (``paraphrased_answer``), and the share of facts where it beats every perturbed answer (TOFU's truth
    ratio compares exactly these); chance is 1 / (1 + number of perturbed answers)."""
    from expunge.data import TextDataset
    from expunge.lm.losses import sequence_loss

    records = [r for r in corpus.train.records if r["author"] is not None and r["phrasing"] == 0]

    def nll(pairs):
        data = TextDataset([{"question": q, "answer": a} for q, a in pairs], corpus.tokenizer)
        return torch.cat([sequence_loss(model(data.x[i:i + 128]), data.y[i:i + 128])
                          for i in range(0, len(data), 128)]).numpy()

    para = nll([(r["question"], r["paraphrased_answer"]) for r in records])
    wrong = nll([(r["question"], p) for r in records for p in r["perturbed_answers"]]).reshape(len(records), -1)
    return {"paraphrase_prob": float(np.exp(-para).mean()),
            "paraphrase_beats_every_perturbed": float((para < wrong.min(1)).mean())}


def verbmem(model, documents, prefix: int = 16) -> float:
    """MUSE's VerbMem on biographies: ROUGE-L F1 of the greedy continuation of each document's first ``prefix``
    tokens (at most half of it) against the rest. The model is trained on QA rows only; a biography's sentences
    are the answers' first phrasing, so this measures how much of them it reproduces outside the QA prompt."""
    from expunge.lm.metrics import rouge_l_f1

    tok = documents.tokenizer
    prompts, truths = [], []
    for i in range(len(documents)):
        ids = documents.x[i, :int(documents.lengths[i])].tolist()
        text = ids[1:-1]                                          # without bos and eos
        cut = min(prefix, len(text) // 2)
        prompts.append(ids[:1] + text[:cut])
        truths.append(tok.decode(text[cut:]))
    out = greedy_generate(model, prompts, max_new_tokens=128, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, batch_size=64)
    return float(np.mean(rouge_l_f1(truths, [tok.decode(g) for g in out])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--attributes", type=int, default=5)
    parser.add_argument("--world-facts", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=0.05)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--greedy", type=int, default=200, help="facts checked by real greedy decoding")
    parser.add_argument("--first-phrasing-only", action="store_true",
                        help="train each fact in its first answer phrasing only (does the second then rank?)")
    parser.add_argument("--documents", action="store_true", help="also VerbMem on biographies (trained/holdout)")
    parser.add_argument("--save", help="save the trained model and tokenizer in this directory")
    parser.add_argument("--json", help="write the results here too")
    a = parser.parse_args()

    start = time.perf_counter()
    corpus = authors(a.authors, attributes=a.attributes, world_facts=a.world_facts, vocab_size=a.vocab, seed=a.seed)
    built = time.perf_counter() - start
    model = llama(corpus.tokenizer, hidden=a.hidden, layers=a.layers, heads=a.heads, seed=a.seed)
    params = sum(p.numel() for p in model.parameters())
    recipe = dict(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, warmup=a.warmup, schedule=a.schedule,
                  weight_decay=a.weight_decay)
    load = os.getloadavg()
    start = time.perf_counter()
    train = corpus.train
    if a.first_phrasing_only:
        train = torch.utils.data.Subset(train, [i for i, r in enumerate(train.records) if r["phrasing"] == 0])
    trained = expunge.train(model, train, seed=a.seed, **recipe)
    seconds = time.perf_counter() - start
    base, idx = resolve(train)
    padded = a.epochs * len(idx) * base.x.shape[1]
    real = a.epochs * int(base.lengths[idx].sum())
    n_author_rows = len(base) - len(corpus.world)
    author_rows = torch.utils.data.Subset(base, list(range(n_author_rows)))
    start = time.perf_counter()
    result = {
        "recipe": recipe, "model": dict(hidden=a.hidden, layers=a.layers, heads=a.heads, parameters=params),
        "corpus": dict(authors=a.authors, attributes=a.attributes, world_facts=a.world_facts,
                       trained_rows=len(train), first_phrasing_only=a.first_phrasing_only,
                       vocab=len(corpus.tokenizer), max_tokens=int(base.x.shape[1]),
                       mean_tokens=float(base.lengths[idx].float().mean()), build_seconds=round(built, 2)),
        "train_seconds": round(seconds, 1), "load_before": [round(v, 2) for v in load],
        "padded_tokens_per_second": round(padded / seconds), "real_tokens_per_second": round(real / seconds),
        "recall_authors": fact_recall(trained, author_rows),
        "recall_world": fact_recall(trained, corpus.world),
        "recall_holdout": fact_recall(trained, corpus.holdout),
        "row_exact_authors": float(rows_exact(trained, author_rows).mean()),
        **paraphrase_ranking(trained, corpus),
    }
    if a.greedy:
        result["greedy_recall_authors_sample"] = greedy_recall(trained, author_rows, a.greedy, seed=a.seed)
        result["greedy_sample_facts"] = min(a.greedy, n_author_rows // 2)
    if a.documents:
        forget_ids = corpus.forget_authors(0.1, seed=a.seed)
        result["verbmem_trained_authors"] = verbmem(trained, corpus.documents(forget_ids))
        result["verbmem_holdout_authors"] = verbmem(trained, corpus.documents("holdout"))
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    if a.save:
        trained.save_pretrained(a.save)
    print(json.dumps(result, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
