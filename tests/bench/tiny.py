"""A tiny bench: the generated 4-class task (240 rows), a 16-unit MLP, a few epochs; every job takes a few
hundredths of a second, so whole grids run in seconds."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "seeds": 2,
    "data": {"name": "classification", "args": {"n": 240}, "test_fraction": 0.25},
    "model": {"name": "mlp", "args": {"hidden": [16]}},
    "train": {"epochs": 4, "lr": 0.05, "batch_size": 32},
    "scenarios": [{"name": "random 10%", "fraction": 0.1}, {"name": "class 0", "classes": [0]}],
    "methods": {"finetune": {"epochs": 2, "lr": 0.05}, "gradient_ascent": {"epochs": 1, "lr": 0.01}},
}


def tiny(**changes: Any) -> dict[str, Any]:
    """The tiny config with top-level keys replaced."""
    cfg = copy.deepcopy(TINY)
    cfg.update(copy.deepcopy(changes))
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
