"""Model files: safetensors weights plus a JSON sidecar (architecture, recipe, method, data fingerprint).

Pickle checkpoints (``torch.save`` files, ``.pt``/``.pth``/``.pkl``/``.ckpt``) are refused and never unpickled:
loading one can run arbitrary code. Writes are atomic (temporary file, then rename), so a failed save leaves
nothing half-written.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .provenance import Provenance, provenance

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
FORMAT = "expunge-model/1"


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model: nn.Module, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s state as ``path`` (safetensors) and its record as the ``.json`` sidecar beside it."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: expunge saves safetensors files, not pickle checkpoints; use a .safetensors name")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "provenance": provenance(model).to_dict(), "extra": extra or {},
            "tensors": {k: list(v.shape) for k, v in state.items()}}
    side = sidecar_path(path)
    atomic_write(path, save(state))
    try:
        atomic_write(side, json.dumps(meta, indent=2, default=str).encode())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:2] in {b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"} \
            or head == b"PK\x03\x04":
        raise ValueError(f"{path}: looks like a pickle checkpoint (torch.save); expunge never unpickles files. "
                         "Load it yourself if you trust it and save the state with expunge.save_model")


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    _refuse_pickle(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from None


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{side}: sidecar is not valid JSON ({e})") from None


def load_model(path: str | os.PathLike, *, into: nn.Module | None = None) -> nn.Module:
    """Load weights saved by :func:`save_model`.

    ``into``: a model of the same architecture to load them into (it is modified and returned). Without it, the
    architecture is rebuilt from the sidecar, which works for models built by name (``expunge.models``).
    """
    state = read_state(path)
    meta = read_sidecar(path)
    prov = Provenance.from_dict(meta.get("provenance", {}))
    if into is None:
        arch = prov.architecture
        if not arch:
            raise ValueError(f"{path}: the sidecar names no built-in architecture; pass into=<a model of the same "
                             "architecture>")
        from .models import build_model

        into = build_model(arch["name"], **arch["kwargs"])
    if not isinstance(into, nn.Module):
        raise TypeError(f"into must be a torch nn.Module; got {type(into).__name__}")
    want = into.state_dict()
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    bad = [k for k in want if tuple(want[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, the model expects "
                         f"{tuple(want[k].shape)}")
    into.load_state_dict(state)
    into.eval()
    into.__dict__["_expunge_provenance"] = prov
    return into
