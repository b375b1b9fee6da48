"""Small assertions shared by tests."""
from __future__ import annotations

import torch


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class LabelReadError(AssertionError):
    """Raised when code under test reads labels it promised not to read."""


def label_guarded(dataset):
    """A copy of an ArrayDataset whose labels raise LabelReadError when read (features stay readable)."""
    from expunge.data.datasets import ArrayDataset

    class Guarded(ArrayDataset):
        @property
        def y(self):
            raise LabelReadError("labels were read")

        @y.setter
        def y(self, value):
            self._hidden_y = value

    return Guarded(dataset.x, dataset.y, task=dataset.task)
