"""Identity: do nothing; return a copy of the original unchanged.

What it is for: the do-nothing baseline that every audit and every score must flag. An unlearning score that
cannot tell the untouched original from retraining has no power on that request, whatever it says about a method;
``expunge audit CONFIG.yaml method=identity args={}`` and ``benchmarks/evidence.py`` point the audit at "no
unlearning" to measure that. It is not an unlearning method and never competes with one: ``forgets`` is False, so
the demos, ``--method auto``, a bench's ``methods: all`` and the comparator's Build form leave it out (name it
explicitly to run it), ``expunge methods`` marks it as the do-nothing baseline, and ``expunge forget`` refuses it
(a deletion certificate for doing nothing would be false).
Paper: none; the "original" / "do nothing" row of unlearning benchmarks (e.g. Jia et al., "Model Sparsity Can
Simplify Machine Unlearning", NeurIPS 2023, tables' "Original" row).
Reference: none (no code: the result is the original's weights and buffers, copied).
Needs: nothing is read, neither forget nor retain data nor labels (the request is still checked, as for any method).
Defaults: no arguments. Grid: none.
Deviations: none (doing nothing has no reference code to depart from).
"""
from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from .base import Method, Needs, register


@register
class Identity(Method):
    name = "identity"
    summary = "Do nothing: the original, copied unchanged (the baseline an audit must flag; forgets nothing)."
    paper = "none: the do-nothing ('original') baseline of unlearning benchmarks"
    reference = "none (a copy of the original)"
    needs = Needs(retain=False, labels=False, forget_labels=False)
    forgets = False

    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        return model           # ``Method.unlearn`` has already copied the caller's model
