"""What every language-model method shares: ``LanguageMethod`` and ``LanguageArgs``.

A language method (``tasks = ("language",)``) implements ``run_language(model, forget, retain, seed)`` on an
:class:`expunge.lm.CausalLM` (a copy; the caller's model is never touched, as for every method) and trains through
:meth:`LanguageMethod.fit_language`, i.e. the one training loop. On top, every language method accepts:

- ``lora={"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "dropout": 0.0, "merge": True}``: attach
  LoRA adapters (peft) and train only them; ``merge`` folds them into the weights afterwards (default), else the
  returned model keeps them (``model.hf`` is then a peft model; ``model.hf.merge_and_unload()`` folds them later);
- ``mask="wagle"`` with ``mask_ratio``: update only the weights WAGLE's weight attribution marks as most
  influential for the forget loss (see ``methods/_wagle.py``); the others are held at the original's values;
- ``self.frozen_original()``: the frozen original (π_ref), taken before adapters are attached, for methods whose
  class sets ``needs_reference = True`` (``reference`` is the class attribute naming the reference repository).

Training defaults (``LanguageArgs``): AdamW at lr 1e-3 with weight decay 0.01, batches of 16, 5 epochs, a constant
learning rate and gradient clipping at norm 1. The papers' learning rates (1e-5 for 7B models) are for pretrained
models with billions of weights; the ~1M-parameter models trained here need larger steps, and each method's file
states its own defaults and grid.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import Plan, fit, mask_gradients, pin_weights
from ._common import frozen
from .base import Method, TrainArgs, clone

LORA_KEYS = {"r", "alpha", "target_modules", "dropout", "merge"}
MASKS = ("wagle",)


@dataclass
class LanguageArgs(TrainArgs):
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 16
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.01
    schedule: str = "constant"
    clip_grad_norm: float | None = 1.0
    lora: dict | None = None
    mask: str | None = None
    mask_ratio: float = 0.5


class LanguageMethod(Method):
    """Base class of the language-model methods (see the module docstring)."""

    tasks: ClassVar[tuple[str, ...]] = ("language",)
    needs_reference: ClassVar[bool] = False
    Args: ClassVar[type] = LanguageArgs

    def validate(self) -> None:
        super().validate()
        a = self.args
        lora = a.lora
        if lora is not None:
            if not isinstance(lora, dict):
                raise ValueError(f"method {self.name!r}: lora={lora!r} is not allowed; expected a dict with keys "
                                 f"{sorted(LORA_KEYS)}")
            unknown = sorted(set(lora) - LORA_KEYS)
            if unknown:
                raise ValueError(f"method {self.name!r}: lora has unknown key(s) {unknown}; allowed: "
                                 f"{', '.join(sorted(LORA_KEYS))}")
            number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
            modules = lora.get("target_modules", ["q_proj", "v_proj"])
            checks = (("r", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
                      ("alpha", lambda v: number(v) and v > 0, "a number > 0"),
                      ("dropout", lambda v: number(v) and 0 <= v < 1, "a number in [0, 1)"),
                      ("merge", lambda v: isinstance(v, bool), "true or false"))
            for key, ok, allowed in checks:
                if key in lora and not ok(lora[key]):
                    raise ValueError(f"method {self.name!r}: lora {key}={lora[key]!r} is not allowed; expected "
                                     f"{allowed}")
            if (not isinstance(modules, (list, tuple)) or not modules
                    or not all(isinstance(m, str) and m for m in modules)):
                raise ValueError(f"method {self.name!r}: lora target_modules={modules!r} is not allowed; expected a "
                                 "non-empty list of module names, e.g. ['q_proj', 'v_proj']")
            if self.args.mask is not None:
                raise ValueError(f"method {self.name!r}: mask= and lora= cannot be combined (the mask selects base "
                                 "weights, which LoRA freezes); use one of them")
        self.require(("mask", a.mask is None or a.mask in MASKS, f"None or one of {', '.join(MASKS)}"),
                     ("mask_ratio", 0 < a.mask_ratio <= 1, "a fraction in (0, 1]"))
        if a.mask == "wagle" and not self.needs.retain:
            # WAGLE's attribution reads the retain loss's gradient: the request must then carry retain data
            self.needs = dataclasses.replace(self.needs, retain=True)

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        from ..lm.models import CausalLM

        if not isinstance(model, CausalLM):
            raise TypeError(f"method {self.name!r} unlearns language models (expunge.lm.CausalLM or a transformers "
                            f"causal LM); got {type(model).__name__}")
        self._reference = frozen(clone(model)) if self.needs_reference else None
        self._lm_masks: dict[str, torch.Tensor] = {}
        if self.args.mask == "wagle":
            from ._wagle import wagle_masks

            self._lm_masks = wagle_masks(model, forget, retain, ratio=self.args.mask_ratio, seed=seed)
        lora = self.args.lora
        if lora is not None:
            model.hf = attach_lora(model.hf, lora, seed)
        try:
            out = self.run_language(model, forget, retain, seed)
        finally:
            self._reference = None
        if lora is not None and lora.get("merge", True):
            out.hf = out.hf.merge_and_unload()
        return out

    def run_language(self, model: nn.Module, forget: Dataset, retain: Dataset | None, seed: int) -> nn.Module:
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------------------------
    def frozen_original(self) -> nn.Module:
        """The frozen original (π_ref), in eval mode, without adapters."""
        if getattr(self, "_reference", None) is None:
            raise RuntimeError(f"method {self.name!r} reads the reference model; set needs_reference = True")
        return self._reference

    def fit_language(self, model: nn.Module, plan: Plan, loss_fn: Callable, seed: int, *,
                     params: Iterable[nn.Parameter] | None = None, **recipe_overrides: Any) -> nn.Module:
        """``training.fit`` with this method's recipe on the language task, its mask pins and WAGLE's mask."""
        grad_hooks, step_hooks = [], list(self.step_hooks())
        masks = getattr(self, "_lm_masks", None) or {}
        if masks:
            anchor = {k: p.detach().clone() for k, p in model.named_parameters() if k in masks}
            grad_hooks.append(mask_gradients(masks))
            step_hooks.append(pin_weights(masks, anchor))
        return fit(model, plan, recipe=self.args.recipe(**recipe_overrides), loss_fn=loss_fn, task="language",
                   seed=seed, name=self.name, params=params, grad_hooks=grad_hooks, step_hooks=step_hooks)


def attach_lora(hf: nn.Module, lora: dict, seed: int) -> nn.Module:
    """``hf`` with LoRA adapters (peft) on ``lora["target_modules"]`` (default q_proj and v_proj), rank ``r``
    (default 8), scaling ``alpha`` (default 2r) and dropout (default 0); the adapters' random initialisation is drawn
    under ``seed``. Only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:                 # pragma: no cover - exercised only without the extra
        raise ImportError("lora= needs peft: pip install 'expunge[lm]'") from e
    r = int(lora.get("r", 8))
    config = LoraConfig(r=r, lora_alpha=lora.get("alpha", 2 * r), lora_dropout=float(lora.get("dropout", 0.0)),
                        target_modules=list(lora.get("target_modules", ["q_proj", "v_proj"])), bias="none",
                        task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(int(seed))
        warnings.filterwarnings("ignore", category=FutureWarning)   # peft's calls into deprecated transformers API
        try:
            return get_peft_model(hf, config)
        except ValueError as e:
            raise ValueError(f"lora: {str(e).splitlines()[0]}") from None


def logits_of(model: nn.Module, part: Any) -> torch.Tensor:
    """The model's logits on a batch part's input ids."""
    return model(part.x)
