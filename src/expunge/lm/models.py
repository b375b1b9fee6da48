"""``CausalLM``: a transformers causal language model and its tokenizer as one ``nn.Module``, and small
configurations built from scratch (nothing is downloaded).

``CausalLM.forward(input_ids)`` returns the logits ``[B, L, V]``, so the training loop, the result checks and the
metrics treat a language model like any other model whose output is a tensor. Inputs are right-padded, so no
attention mask is needed (see :mod:`expunge.data.text`). The wrapped model is ``.hf`` (a ``PreTrainedModel``, or a
peft model while adapters are attached), its tokenizer ``.tokenizer``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..provenance import provenance, stamp

PROVENANCE_FILE = "expunge_provenance.json"


def _transformers():
    try:
        import transformers
    except ImportError as e:                 # pragma: no cover - exercised only without the extra
        raise ImportError("language models need the lm extra: pip install 'expunge[lm]' (transformers, tokenizers, "
                          "peft)") from e
    return transformers


def is_language_model(model: Any) -> bool:
    """True for a :class:`CausalLM`, a transformers ``PreTrainedModel`` or a peft model (without importing either
    library when it is not loaded)."""
    if isinstance(model, CausalLM):
        return True
    names = {c.__module__.split(".")[0] for c in type(model).__mro__}
    return bool(names & {"transformers", "peft"})


class CausalLM(nn.Module):
    """A causal LM (``hf``: a transformers ``PreTrainedModel`` or a peft model) with its ``tokenizer``."""

    def __init__(self, model: nn.Module, tokenizer: Any):
        super().__init__()
        if not is_language_model(model) or isinstance(model, CausalLM):
            raise TypeError(f"CausalLM wraps a transformers or peft causal language model; got {type(model).__name__}")
        if tokenizer is None:
            raise ValueError("a language model needs its tokenizer; pass the one its data was encoded with")
        self.hf = model
        self.tokenizer = tokenizer

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_input_embeddings().weight.shape[0])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, use_cache=False).logits

    def hidden(self, input_ids: torch.Tensor, layer: int) -> torch.Tensor:
        """The residual stream after decoder layer ``layer`` (0-based), ``[B, L, d]``: that layer's output, read by
        a forward hook (transformers' last ``hidden_states`` entry is taken after the final norm instead)."""
        layers = self.decoder_layers()
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
            raise ValueError(f"layer={layer!r} is not allowed; this model has decoder layers 0..{len(layers) - 1}")
        seen: list[torch.Tensor] = []
        handle = layers[layer].register_forward_hook(
            lambda module, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
        try:
            self.hf(input_ids=input_ids, use_cache=False)
        finally:
            handle.remove()
        return seen[0]

    def decoder_layers(self) -> nn.ModuleList:
        """The decoder layers (``model.layers`` of Llama-, Mistral-, Qwen- and Mixtral-style models)."""
        base = self.hf.get_base_model() if hasattr(self.hf, "get_base_model") else self.hf
        inner = getattr(base, "model", None)
        layers = getattr(inner, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"cannot find the decoder layers of {type(base).__name__} (looked for .model.layers)")
        return layers

    def fresh_copy(self) -> "CausalLM":
        """A re-initialised model of the same configuration (drawn from torch's current RNG), with the tokenizer:
        what retraining starts from."""
        if hasattr(self.hf, "peft_config"):
            raise ValueError("this model carries LoRA adapters; merge them (merge_and_unload) before retraining")
        transformers = _transformers()
        fresh = transformers.AutoModelForCausalLM.from_config(self.hf.config)
        return CausalLM(fresh.to(self.hf.dtype), self.tokenizer)

    def save_pretrained(self, path: str | Path) -> Path:
        """Model and tokenizer in transformers' format under ``path``, plus expunge's provenance record."""
        if hasattr(self.hf, "peft_config"):
            raise ValueError("this model carries LoRA adapters; merge them first (model.hf = "
                             "model.hf.merge_and_unload()) or save the adapters alone with model.hf.save_pretrained")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / PROVENANCE_FILE).write_text(json.dumps(provenance(self).to_dict(), indent=1, default=str))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "CausalLM":
        """A model and tokenizer from a local directory (``save_pretrained`` output or any transformers causal LM
        directory); never downloads."""
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"no such model directory: {path} (a local directory written by save_pretrained)")
        transformers = _transformers()
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        out = cls(hf, tok)
        record = path / PROVENANCE_FILE
        if record.is_file():
            from ..provenance import Provenance
            out.__dict__["_expunge_provenance"] = Provenance.from_dict(json.loads(record.read_text()))
        if provenance(out).task is None:
            stamp(out, task="language")
        return out


def as_language_model(model: nn.Module, data: Any = None) -> CausalLM:
    """``model`` as a :class:`CausalLM`: as given when it is one; a transformers or peft model wrapped with the
    tokenizer ``data`` was encoded with (a :class:`~expunge.data.TextDataset` or a subset of one)."""
    if isinstance(model, CausalLM):
        return model
    if not is_language_model(model):
        raise TypeError(f"expected a language model (expunge.lm.CausalLM or a transformers causal LM); got "
                        f"{type(model).__name__}")
    from ..data.text import text_base

    if data is None:
        raise ValueError("a bare transformers model needs text data to take its tokenizer from; wrap it as "
                         "expunge.lm.CausalLM(model, tokenizer)")
    base, _ = text_base(data)
    out = CausalLM(model, base.tokenizer)
    stamp(out, model, task="language")
    return out


def _check_size(name: str, **sizes: int) -> None:
    for k, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: {k}={v!r} is not allowed; expected an integer >= 1")


def _special_ids(tokenizer: Any) -> dict[str, Any]:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def _build(kind: str, config_kwargs: dict[str, Any], tokenizer: Any, seed: int) -> CausalLM:
    transformers = _transformers()
    config_cls, model_cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
                             "moe": (transformers.MixtralConfig, transformers.MixtralForCausalLM)}[kind]
    config = config_cls(**config_kwargs, **_special_ids(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        hf = model_cls(config)
    out = CausalLM(hf, tokenizer)
    stamp(out, architecture={"name": kind, "kwargs": config_kwargs}, task="language",
          num_outputs=config_kwargs["vocab_size"], init_seed=int(seed))
    return out


def llama(tokenizer: Any, *, hidden: int = 128, layers: int = 4, heads: int = 4, intermediate: int | None = None,
          max_positions: int = 256, seed: int = 0) -> CausalLM:
    """A randomly initialised Llama-configuration model sized for ``tokenizer`` (tied input/output embeddings,
    RMSNorm, rotary positions, SwiGLU), initialised under ``seed``. The defaults give ~1M parameters with a
    ~1,000-token vocabulary."""
    intermediate = intermediate or int(hidden * 8 / 3 + 0.5)
    _check_size("llama", hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                max_positions=max_positions)
    if hidden % heads:
        raise ValueError(f"llama: hidden={hidden} must be a multiple of heads={heads}")
    kwargs = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                  max_position_embeddings=max_positions, tie_word_embeddings=True)
    return _build("llama", kwargs, tokenizer, seed)


def moe(tokenizer: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4, experts: int = 4, top_k: int = 1,
        intermediate: int | None = None, max_positions: int = 256, seed: int = 0) -> CausalLM:
    """A randomly initialised mixture-of-experts model (Mixtral configuration: a router per layer sends each token
    to ``top_k`` of ``experts`` SwiGLU experts), for expert-level unlearning (UOE)."""
    intermediate = intermediate or 2 * hidden
    _check_size("moe", hidden=hidden, layers=layers, heads=heads, experts=experts, top_k=top_k,
                intermediate=intermediate, max_positions=max_positions)
    if top_k > experts:
        raise ValueError(f"moe: top_k={top_k} is not allowed; expected at most experts={experts}")
    if hidden % heads:
        raise ValueError(f"moe: hidden={hidden} must be a multiple of heads={heads}")
    kwargs = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                  num_local_experts=experts, num_experts_per_tok=top_k, max_position_embeddings=max_positions,
                  tie_word_embeddings=True, output_router_logits=False)
    return _build("moe", kwargs, tokenizer, seed)
