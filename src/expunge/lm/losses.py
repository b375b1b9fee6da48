"""Token-level losses of causal language models, shared by the training loop, the methods and the metrics.

Conventions (OpenUnlearning's, restated): a sequence's answer log-probability log π(y|x) is the **sum** of the
log-probabilities of its labelled tokens; the training NLL of a batch (:func:`lm_loss`) is the mean over every
labelled token of the batch (the transformers loss), not a mean of per-sequence means. Labels are -100 where the
loss does not look (the question, padding); logits at position t predict the token at t + 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at positions 0..L-2 and the labels they predict (positions 1..L-1)."""
    if logits.ndim != 3 or labels.ndim != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(f"expected logits [B, L, V] and labels [B, L]; got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    return logits[:, :-1], labels[:, 1:]


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token NLL of the next token, ``[B, L-1]``, 0 where the label is -100."""
    lg, lb = shifted(logits, labels)
    nll = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE,
                          reduction="none")
    return nll.view(lb.shape)


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nll_sum [B], n_tokens [B])``: each sequence's NLL summed over its labelled tokens, and their count."""
    nll = token_nll(logits, labels)
    return nll.sum(1), (labels[:, 1:] != IGNORE).sum(1)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over every labelled token of the batch (the transformers causal-LM loss)."""
    lg, lb = shifted(logits, labels)
    return F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean NLL over its labelled tokens, ``[B]`` (``reduction='none'`` of the language task)."""
    total, n = answer_nll(logits, labels)
    return total / n.clamp_min(1)


def trimmed(input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch cut after its last labelled column: under causal attention the logits of the kept
    positions do not depend on the columns cut, so the loss is the same and the padding costs nothing."""
    labelled = (labels != IGNORE).any(0).nonzero()
    end = int(labelled[-1]) + 1 if len(labelled) else 1
    return input_ids[:, :end], labels[:, :end]


def language_loss_fn(part: str = "data"):
    """``fit``'s default loss on the language task: :func:`lm_loss` of the model on one part of the batch, the batch
    trimmed by :func:`trimmed`."""
    def loss_fn(model, batch, ctx) -> torch.Tensor:
        p = batch[part]
        x, y = trimmed(p.x, p.y)
        return lm_loss(model(x), y)
    return loss_fn
