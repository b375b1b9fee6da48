"""README's language-model example runs as written (on a smaller corpus and fewer epochs, to stay fast)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("peft")


def test_readme_language_example_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.+?)\n```", readme, re.S) if "expunge.lm import llama" in b)
    assert "authors(n_authors=40, seed=0)" in block and "corpus.train, seed=0)" in block
    code = block.replace("authors(n_authors=40, seed=0)", "authors(n_authors=6, seed=0, world_facts=10)")
    code = code.replace("corpus.train, seed=0)", "corpus.train, seed=0, epochs=2)")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)   # noqa: S102
    scores = namespace["scores"]
    assert {"forget_quality", "model_utility", "avg_gap"} <= set(scores)
    assert type(namespace["model"]).__name__ == "CausalLM" and not hasattr(namespace["model"].hf, "peft_config")
