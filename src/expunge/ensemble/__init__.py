"""Batched ensembles: K models of one architecture trained together, cheaply, on CPU.

The strong privacy audits need many models: LiRA shadow models (Carlini et al., IEEE S&P 2022), many oracles and
many unlearned models for the NeurIPS 2023 Machine Unlearning challenge's ε score and for KLoM (Georgiev et al.,
"Attribute-to-Delete", ICLR 2025), U-LiRA (Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to
Avoid a False Sense of Privacy", SaTML 2025): 16 to 512 models each. Small models waste most of a training step on
Python overhead, so K of them are stacked (``torch.func.stack_module_state``) and run as one model whose forward
``vmap``s ``functional_call`` over the members; ``expunge.training.fit``, the one training loop, trains them.
Reference code for the audits: https://github.com/tensorflow/privacy (``research/mi_lira_2021``),
https://github.com/google-deepmind/unlearning_evaluation, https://github.com/RoyRin/data-unlearning-bench; for the
stacking technique, PyTorch's ``torch.func`` model-ensembling tutorial.

- :func:`train`: K models from fresh seeded initialisations, each on all the data, on ``masks[k]`` or on its own
  dataset (shadow models: ``masks=half_masks(K, len(data), seed=...)``);
- :func:`unlearn`: a method run K times (K oracles: ``unlearn(original, forget=..., retain=..., method="retrain",
  seeds=range(K))``); vectorised for ``retrain`` and ``finetune``, member by member otherwise;
- :func:`fit_members`: the general form, from any K starting models;
- :class:`Ensemble`: ``predict(data)`` gives ``[K, N, C]`` outputs; ``member(i)`` an ordinary model;
- :func:`half_masks`: inclusion masks with every member on exactly half the data and every example in exactly
  half the members.

Member k equals the model trained alone with the same seed, initialisation and data up to floating-point rounding
(batched matrix products add in a different order than unbatched ones): about 1e-7 in the parameters after a few
epochs on digits. Training amplifies such differences, so after long runs an occasional member drifts further
(up to 2e-3 after 30 epochs, same test accuracy).

Cost (``benchmarks/ensembles.py``, 64 digits MLPs, one CPU thread): the arithmetic of 64 members is 64 times one
model's; what the ensemble saves is the per-step overhead that dominates a small model trained alone. Ensemble
training also sets glibc's malloc thresholds process-wide (:mod:`expunge._memory`; ``hold_memory=False`` to opt
out) and uses fused optimiser kernels.
"""
from .fitting import clip_members, fit_members, member_rows, train
from .masks import half_masks
from .stacked import Ensemble
from .unlearning import VECTORISED, unlearn

__all__ = ["Ensemble", "train", "unlearn", "fit_members", "half_masks", "member_rows", "clip_members", "VECTORISED"]
