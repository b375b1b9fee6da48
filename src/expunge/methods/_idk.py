"""What the "I don't know" methods share (``idk_dpo``, ``idk_nll``, ``flat``): the refusal answers, the dataset
that pairs each forget question with one of them, and batches that hold the same forget rows with their true and
their refusal answers.

The refusals default to :data:`expunge.data.authors.IDK_ANSWERS`; a method's ``idk_answers=`` replaces them. As in
the reference code (TOFU's and OpenUnlearning's idk datasets, FLAT's), each forget question gets a refusal drawn
uniformly at random every time it is read, i.e. once per epoch; here epoch ``e``'s draws come from
``expunge.seeds.derive(seed, IDK_DRAW, e)``, so the same run seed gives the same refusals in the same epochs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..seeds import derive
from ..training import Batch, Plan, Source

IDK_DRAW = "idk-answers"     # the seed stream the refusal of each forget question is drawn from
MAX_IDK_ANSWERS = 10_000


def default_idk_answers() -> list[str]:
    """The authors corpus's "I don't know" phrasings (imported when needed)."""
    from ..data.authors import IDK_ANSWERS

    return list(IDK_ANSWERS)


def idk_answers_problem(answers: Any) -> str | None:
    """Why ``answers`` cannot serve as refusal answers (None when they can)."""
    if answers is None:
        return None
    if not isinstance(answers, (list, tuple)) or not answers:
        return "a non-empty list of strings"
    if len(answers) > MAX_IDK_ANSWERS:
        return f"at most {MAX_IDK_ANSWERS:,} strings"
    if not all(isinstance(a, str) and a.strip() for a in answers):
        return "a list of non-empty strings"
    return None


def idk_dataset(method: str, forget: Dataset, answers: Sequence[str] | None, seed: int, epoch: int = 0):
    """``forget``'s questions, in its order, each with a refusal drawn for ``epoch`` of the run with ``seed``: a
    TextDataset whose row ``i`` is forget row ``i`` with another answer. Question/answer data only (ValueError
    naming ``method``)."""
    from ..data.text import text_base, with_answers

    base, idx = text_base(forget)
    if base.kind != "qa":
        raise ValueError(f"method {method!r} pairs each forget question with an \"I don't know\" answer, so it needs "
                         "question/answer data; the forget set holds documents")
    pool = list(answers) if answers is not None else default_idk_answers()
    draw = np.random.default_rng(derive(seed, IDK_DRAW, epoch)).integers(len(pool), size=len(idx))
    return with_answers(forget, [pool[int(i)] for i in draw], name="forget questions with refusals")


def paired(method: str, forget: Dataset, answers: Sequence[str] | None, seed: int, batch_size: int, *,
           retain: Dataset | None = None, retain_batch_size: int | None = None) -> Plan:
    """One pass over ``forget`` per epoch in shuffled batches with parts ``"forget"`` and ``"idk"`` holding the
    same rows, the second with the refusals drawn for that epoch (:func:`idk_dataset`); with ``retain``, each batch
    also has a ``"retain"`` part, the retain set cycled and reshuffled on each pass as in
    :func:`expunge.training.zipped`. The forget data is checked (question/answer pairs) when the plan is made."""
    first = idk_dataset(method, forget, answers, seed, 0)
    fsrc = Source(forget)
    rsrc = Source(retain) if retain is not None else None
    if rsrc is not None and len(rsrc) == 0:
        raise ValueError(f"method {method!r}: the retain data is empty; give it at least one example")
    rbs = retain_batch_size or batch_size

    def plan(epoch: int, g) -> list[Batch]:
        isrc = Source(first if epoch == 0 else idk_dataset(method, forget, answers, seed, epoch))
        chunks = list(fsrc.order(g).split(batch_size))
        rchunks: list = []
        while rsrc is not None and len(rchunks) < len(chunks):
            rchunks += list(rsrc.order(g).split(rbs))
        out = []
        for i, c in enumerate(chunks):
            parts = {"forget": fsrc.part(c), "idk": isrc.part(c)}
            if rsrc is not None:
                parts["retain"] = rsrc.part(rchunks[i])
            out.append(Batch(parts))
        return out
    return plan
