"""Model outputs on a dataset, computed in batches without gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import resolve
from ..devices import model_device, move
from ..training import regression_output
from .scores import confidence


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Raw outputs (logits for classification) of ``model`` on every example of ``dataset``, in order, as a CPU
    tensor; each batch runs on the model's device."""
    base, idx = resolve(dataset)
    device = model_device(model)
    was_training = model.training
    model.eval()
    outs = [model(move(base.x[chunk], device)) for chunk in idx.split(batch_size)] if len(idx) else []
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    return torch.cat(outs).cpu()


def true_class_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p(y | x) under the model's softmax, as a float32 tensor (:func:`expunge.metrics.scores.confidence`, the
    same score as a float64 numpy array)."""
    return torch.from_numpy(confidence(logits, y)).float()


def per_example_loss(outputs: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy per example for classification; L1 error per example for regression."""
    if task == "classification":
        return F.cross_entropy(outputs, y, reduction="none")
    err = (regression_output(outputs, y) - y).abs()
    return err.flatten(1).mean(1) if err.ndim > 1 else err
