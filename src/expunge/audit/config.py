"""Audit configs: an experiment config (:mod:`expunge.config`) with an optional ``audit:`` section.

```yaml
audit: {n_models: 64, seed: 0, swap: true, mode: standard}
# n_models: K models of each kind (default 64); seed (default: the config's seed); swap: play the SWAP test
# (default true; false saves K full trainings and K runs of the method and reports no SWAP-test advantage);
# mode: standard, or vulnerable (adds the vulnerable-sample audit, expunge.audit.vulnerable); top: how many
# vulnerable forget examples (vulnerable mode only; default min(20, forget size))
```

``--mode`` and ``--top`` on the command line replace ``audit.mode`` and ``audit.top``. ``method=NAME`` on the command
line must come with that method's arguments, whole (``args={}`` for its defaults, ``args={KEY: VALUE, ...}``, or an
``args.KEY=VALUE`` for every key of the file's ``args``): the file's ``args`` were written for its own method.
``method=retrain args={}`` audits exact retraining, with the oracles' recipe.

``key.sub=value`` overrides apply to the whole file first (``audit.n_models=16`` included); errors name the key
path (``config error at audit.n_models: ...``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, ExperimentConfig, apply_overrides, check_method_override, parse_config, read_yaml
from .vulnerable import MODES

AUDIT_KEYS = ("n_models", "seed", "swap", "mode", "top")
DEFAULT_MODELS = 64


@dataclass
class AuditSettings:
    n_models: int = DEFAULT_MODELS
    seed: int = 0
    swap: bool = True
    mode: str = "standard"
    top: int | None = None


def load_audit_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                      models: int | None = None, mode: str | None = None, top: int | None = None
                      ) -> tuple[ExperimentConfig, AuditSettings]:
    """Read, override and validate an audit config; ``models`` (``--models``), ``mode`` (``--mode``) and ``top``
    (``--top``) replace ``audit.n_models``, ``audit.mode`` and ``audit.top``; ``top`` is checked against the
    forget set's size later, by :func:`expunge.audit.check_audit`."""
    given = read_yaml(path)
    raw = apply_overrides(given, overrides)
    check_method_override(given, raw, overrides)
    section = raw.pop("audit", None)
    cfg = parse_config(raw, base_dir=Path(path).parent)
    if cfg.tune_trials is not None:
        raise ConfigError("args", "auto (a quick tuning) applies to expunge run; an audit needs the method's "
                                  "arguments given as a mapping")
    settings = parse_audit(section, default_seed=cfg.seed)
    if models is not None:
        settings.n_models = check_models(models, "--models")
    if mode is not None:
        settings.mode = check_mode_name(mode, "--mode")
    if top is not None:
        settings.top = check_top(top, "--top")
    if settings.top is not None and settings.mode != "vulnerable":
        raise ValueError(f"--top / audit.top {settings.top} applies only to the vulnerable mode (--mode vulnerable)")
    return cfg, settings


def check_mode_name(value: Any, where: str) -> str:
    if value not in MODES:
        if where.startswith("--"):
            raise ValueError(f"{where} {value!r} is not allowed; allowed: {', '.join(MODES)}")
        raise ConfigError(where, f"expected one of {', '.join(MODES)}; got {value!r}")
    return value


def check_top(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        if where.startswith("--"):
            raise ValueError(f"{where} {value!r} is not allowed; expected an integer >= 1 (vulnerable forget "
                             f"examples, at most the forget set's size)")
        raise ConfigError(where, f"expected an integer >= 1 (at most the forget set's size); got {value!r}")
    return value


def check_models(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        message = f"expected an integer >= 2 (tier 1 from 16, tier 2 from 64); got {value!r}"
        if where.startswith("--"):
            raise ValueError(f"{where} {value!r} is not allowed; {message.split('; ')[0]}")
        raise ConfigError(where, message)
    return value


def parse_audit(section: Any, *, default_seed: int = 0) -> AuditSettings:
    if section is None:
        return AuditSettings(seed=default_seed)
    if not isinstance(section, dict):
        raise ConfigError("audit", f"expected a mapping; got {type(section).__name__} {section!r}")
    unknown = sorted(set(section) - set(AUDIT_KEYS))
    if unknown:
        raise ConfigError(f"audit.{unknown[0]}", f"unknown key; allowed: {', '.join(AUDIT_KEYS)}")
    n = check_models(section.get("n_models", DEFAULT_MODELS), "audit.n_models")
    seed = section.get("seed", default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("audit.seed", f"expected an integer >= 0; got {seed!r}")
    swap = section.get("swap", True)
    if not isinstance(swap, bool):
        raise ConfigError("audit.swap", f"expected true or false (play the SWAP test or not); got {swap!r}")
    mode = check_mode_name(section.get("mode", "standard"), "audit.mode")
    top = section.get("top")
    if top is not None:
        top = check_top(top, "audit.top")
    return AuditSettings(n_models=n, seed=seed, swap=swap, mode=mode, top=top)
