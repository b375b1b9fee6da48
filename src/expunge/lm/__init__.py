"""Causal language models (Hugging Face transformers) on expunge's front door.

``expunge.train``, ``expunge.unlearn`` and ``expunge.evaluate`` take a :class:`CausalLM` (a transformers causal LM
with its tokenizer) or a bare transformers/peft model (wrapped with the data's tokenizer by
:func:`as_language_model`), and text data (:class:`expunge.data.TextDataset`). Needs the ``lm`` extra
(``pip install 'expunge[lm]'``: transformers, tokenizers, peft); nothing is downloaded: models are built from
configs (:func:`llama`, :func:`moe`) or read from a local directory (:meth:`CausalLM.from_pretrained`).
"""
from __future__ import annotations

from .models import CausalLM, as_language_model, is_language_model, llama, moe

__all__ = ["CausalLM", "as_language_model", "is_language_model", "llama", "moe"]
