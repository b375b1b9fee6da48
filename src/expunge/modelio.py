"""Model files: safetensors weights plus a JSON sidecar (architecture, recipe, method, data fingerprint).

Pickle checkpoints (``torch.save`` files, ``.pt``/``.pth``/``.pkl``/``.ckpt``) are refused and never unpickled:
loading one can run arbitrary code.

Saving writes both files of the pair to temporary files beside their destinations (flushed to disk) before either
replaces anything; if a step fails after the weights were renamed into place, the previous weights are put back.
A failure at any step therefore leaves the previous pair intact and loadable (or, for a new name, nothing). The
sidecar records the weights' SHA-256, and loading checks it, so weights and a sidecar that were not saved together
(or a truncated, corrupted file) are reported as such rather than loaded.

Loading checks the safetensors header against the file's size and the declared architecture against the header
(building it on torch's ``meta`` device, which allocates nothing) before any tensor is allocated, so a sidecar or
header declaring an enormous layer is refused at once.

Language models (:class:`expunge.lm.CausalLM`) are saved as a directory in transformers' format (``config.json``,
``model.safetensors``, the tokenizer's files) plus expunge's provenance record and a manifest holding every file's
SHA-256 (:data:`LM_MANIFEST`). The directory is written complete under a temporary name beside ``path`` and then
renamed into place; a previous directory at ``path`` is moved aside first and put back if the rename fails, so a
failure at any step leaves the previous model as it was. Loading a directory checks the manifest (when there is
one: a directory written by transformers itself has none) and refuses pickle-only weights (``pytorch_model.bin``).

Image generators (:mod:`expunge.gen`) are saved like other models; the sidecar also holds their kind and
configuration (``generator``), from which ``load_model`` rebuilds them before loading the weights.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .provenance import Provenance, provenance

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
FORMAT = "expunge-model/1"
LM_FORMAT = "expunge-lm/1"
LM_MANIFEST = "expunge_files.json"      # a language-model directory's file checksums, written last
CHECKSUM = "weights_sha256"
MAX_HEADER_BYTES = 100 * 2**20      # safetensors' own limit on its JSON header
MAX_SIDECAR_BYTES = 16 * 2**20
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, flushed, then renamed."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new temporary file beside ``path``, flushed to disk; removed again if any step fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp creates 0600; give the file the usual permissions
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(directory: Path) -> None:
    """Flush a directory's entries (the renames) to disk where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model: nn.Module, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s state as ``path`` (safetensors) and its record as the ``.json`` sidecar beside it; a language
    model (``expunge.lm.CausalLM``) as the directory ``path`` in transformers' format with its tokenizer, its record
    and a checksum manifest (see the module docstring)."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: expunge saves safetensors files, not pickle checkpoints; use a .safetensors name")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module; got {type(model).__name__}")
    if _is_language_model(model):
        return _save_language_model(model, path, extra)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    weights = save(state)
    meta = {"format": FORMAT, "provenance": provenance(model).to_dict(), "extra": extra or {},
            "tensors": {k: list(v.shape) for k, v in state.items()}, **_generator_record(model),
            CHECKSUM: hashlib.sha256(weights).hexdigest()}
    _write_pair(path, weights, sidecar_path(path), json.dumps(meta, indent=2, default=str).encode())
    return path


def _write_pair(path: Path, weights: bytes, side: Path, sidecar: bytes) -> None:
    """Replace the pair (``path``, ``side``) so that a failure at any step leaves the previous pair as it was."""
    new_weights = _write_temp(path, weights)
    try:
        new_sidecar = _write_temp(side, sidecar)
    except BaseException:
        new_weights.unlink(missing_ok=True)
        raise
    backup = None
    replaced = False
    try:
        if path.exists():
            backup = _backup(path)
        os.replace(new_weights, path)
        replaced = True
        os.replace(new_sidecar, side)
    except BaseException:
        if replaced:   # the new weights are in place beside the old sidecar: put the old weights back
            if backup is not None:
                restore, backup = backup, None    # kept, whatever happens: it holds the previous weights
                os.replace(restore, path)         # if this fails too, loading reports the mismatched pair
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for leftover in (new_weights, new_sidecar, backup):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    _sync_dir(path.parent)


def _backup(path: Path) -> Path:
    """A second name for ``path``'s current content (a hard link, else a copy), to restore it from."""
    name = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
    try:
        os.link(path, name)
    except OSError:
        name.unlink(missing_ok=True)
        return _write_temp(name, path.read_bytes())
    return name


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:2] in {b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"} \
            or head == b"PK\x03\x04":
        raise ValueError(f"{path}: looks like a pickle checkpoint (torch.save); expunge never unpickles files. "
                         "Load it yourself if you trust it and save the state with expunge.save_model")


def read_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's dtype and shape from a safetensors file's header, after checking that the header and the
    tensors it declares fit the file exactly (a truncated or padded file is refused); allocates no tensor."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    _refuse_pickle(path)
    size = path.stat().st_size
    bad = f"{path}: not a valid safetensors file"
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError(f"{bad} ({size} bytes, shorter than the 8-byte header length)")
        n = int.from_bytes(raw, "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{bad} (declares a {n}-byte header in a {size}-byte file: truncated or not safetensors)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{bad} (its header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (its header is not a JSON object)")
    data = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            ok = dtype in DTYPE_BYTES and all(type(d) is int and d >= 0 for d in shape) \
                and type(lo) is int and type(hi) is int and 0 <= lo <= hi
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{bad} (tensor {name!r} has a malformed entry in the header)")
        if hi - lo != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise ValueError(f"{bad} (tensor {name!r} of shape {list(shape)} does not match its {hi - lo} bytes)")
        out[name] = (dtype, shape)
        end = max(end, hi)
    if end != data:
        raise ValueError(f"{bad} (the header declares {end} bytes of tensor data, the file holds {data}: "
                         f"{'truncated' if end > data else 'trailing bytes'})")
    return out


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    read_header(path)
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
    if side.stat().st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{side}: sidecar is {side.stat().st_size} bytes; a model sidecar is at most "
                         f"{MAX_SIDECAR_BYTES} bytes")
    try:
        meta = json.loads(side.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{side}: sidecar is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{side}: sidecar must be a JSON object; got {type(meta).__name__}")
    return meta


def check_model_files(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a saved pair without loading it: the safetensors layout (:func:`read_header`), and the sidecar's
    tensor list and weights checksum against the file. Returns the header; raises ValueError naming the problem."""
    path = Path(path)
    header = read_header(path)
    _check_pair(path, header, read_sidecar(path))
    return header


def _check_pair(path: Path, header: dict[str, tuple[str, tuple[int, ...]]], meta: dict[str, Any]) -> None:
    side = sidecar_path(path)
    declared = meta.get("tensors")
    if isinstance(declared, dict):
        held = {k: list(shape) for k, (_, shape) in header.items()}
        if {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in declared.items()} != held:
            diff = sorted(set(declared) ^ set(held)) or [k for k in held if list(declared[k]) != held[k]]
            raise ValueError(f"{path}: weights and sidecar {side.name} do not belong together (they disagree on "
                             f"tensor {diff[0]!r}); save the model again")
    want = meta.get(CHECKSUM)
    if want is not None:
        digest = _sha256(path)
        if digest != want:
            raise ValueError(f"{path}: weights do not match the checksum their sidecar {side.name} records (sha256 "
                             f"{digest[:12]}…, recorded {str(want)[:12]}…): the file is corrupt or the pair was not "
                             "saved together; save the model again")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path: str | os.PathLike, *, into: nn.Module | None = None) -> nn.Module:
    """Load weights saved by :func:`save_model` (a directory: a language model, see :func:`load_language_model`).

    ``into``: a model of the same architecture to load them into (it is modified and returned). Without it, the
    architecture is rebuilt from the sidecar, which works for models built by name (``expunge.models``). Shapes
    are checked against the file's header before anything is allocated.
    """
    path = Path(path)
    if path.is_dir():
        if into is not None:
            raise ValueError(f"{path} is a model directory, which rebuilds its model from its config.json; into= "
                             "applies to .safetensors files")
        return load_language_model(path)
    header = check_model_files(path)
    meta = read_sidecar(path)
    prov = Provenance.from_dict(meta.get("provenance", {}) if isinstance(meta.get("provenance"), dict) else {})
    if into is None and "generator" in meta:
        into = _build_generator(path, meta["generator"])
    if into is None:
        arch = prov.architecture
        if not arch:
            raise ValueError(f"{path}: the sidecar names no built-in architecture; pass into=<a model of the same "
                             "architecture>")
        into = _build_checked(path, arch, header)
    if not isinstance(into, nn.Module):
        raise TypeError(f"into must be a torch nn.Module; got {type(into).__name__}")
    _check_fits(path, into.state_dict(), header)
    into.load_state_dict(read_state(path))
    into.eval()
    into.__dict__["_expunge_provenance"] = prov
    return into


def _build_checked(path: Path, arch: Any, header: dict[str, tuple[str, tuple[int, ...]]]) -> nn.Module:
    """The sidecar's architecture, built first on the ``meta`` device (no memory) and checked against the header,
    then for real."""
    from .models import build_model

    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs"), dict):
        raise ValueError(f"{path}: the sidecar's architecture must be {{\"name\": ..., \"kwargs\": {{...}}}}; got "
                         f"{str(arch)[:80]}")
    listed = sum(len(v) for k, v in arch["kwargs"].items() if isinstance(v, (list, tuple)) and k != "sample_shape")
    if listed > len(header):   # each layer a list argument asks for (hidden widths) holds at least one tensor
        raise ValueError(f"{path}: the sidecar's architecture lists {listed} layers, the weights hold "
                         f"{len(header)} tensors")
    try:
        with torch.device("meta"):
            skeleton = build_model(arch["name"], **arch["kwargs"])
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise ValueError(f"{path}: the sidecar's architecture cannot be built: {e}") from None
    _check_fits(path, skeleton.state_dict(), header)
    return build_model(arch["name"], **arch["kwargs"])


def _check_fits(path: Path, want: dict[str, torch.Tensor], header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    missing, unexpected = sorted(set(want) - set(header)), sorted(set(header) - set(want))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    bad = [k for k in want if tuple(want[k].shape) != tuple(header[k][1])]
    if bad:
        k = bad[0]
        raise ValueError(f"{path}: tensor {k} has shape {tuple(header[k][1])}, the model expects "
                         f"{tuple(want[k].shape)}")


# ------------------------------------------------------------------------------------------ image generators
def _generator_record(model: nn.Module) -> dict[str, Any]:
    """What rebuilds an image generator (``expunge.gen``): its kind and configuration, for the sidecar."""
    from .gen.base import is_generative

    return {"generator": {"kind": model.kind, "config": model.config()}} if is_generative(model) else {}


def _build_generator(path: Path, record: Any) -> nn.Module:
    from .gen import from_config

    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path}: the sidecar's generator must be {{\"kind\": ..., \"config\": {{...}}}}; got "
                         f"{str(record)[:80]}")
    try:
        return from_config(record.get("kind"), record["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: the sidecar's generator cannot be built: {e}") from None


# ------------------------------------------------------------------------------------------ language models
def _is_language_model(model: nn.Module) -> bool:
    from .lm.models import is_language_model

    return is_language_model(model)


def _save_language_model(model: nn.Module, path: Path, extra: dict[str, Any] | None) -> Path:
    """``model`` (a CausalLM) as the directory ``path``, written beside it and renamed into place (see the module
    docstring)."""
    from .lm.models import CausalLM

    if not isinstance(model, CausalLM):
        raise TypeError(f"a {type(model).__name__} is saved with its tokenizer: pass expunge.lm.CausalLM(model, "
                        "tokenizer)")
    if hasattr(model.hf, "peft_config"):
        raise ValueError("this model carries LoRA adapters; merge them first (model.hf = "
                         "model.hf.merge_and_unload()) and save the merged model")
    if path.suffix.lower() in (".safetensors", ".json"):
        raise ValueError(f"{path}: a language model is saved as a directory in transformers' format; give a "
                         f"directory name (e.g. {path.with_suffix('')})")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; a language model is saved as a directory")
    if path.is_dir() and any(path.iterdir()) and not _is_model_directory(path):
        raise ValueError(f"{path} is a directory that holds no saved model (no config.json); refusing to replace "
                         "it: give a new or empty directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        model.save_pretrained(tmp)
        files = {f.name: _sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        for f in tmp.iterdir():
            _sync_file(f)
        manifest = {"format": LM_FORMAT, "extra": extra or {}, "files": files}
        atomic_write(tmp / LM_MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
        _replace_directory(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _is_model_directory(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / LM_MANIFEST).is_file()


def _replace_directory(new: Path, path: Path) -> None:
    """Rename the complete directory ``new`` to ``path``; a previous ``path`` is moved aside first and put back
    if the rename fails, then removed."""
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
        os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    _sync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def check_language_model_files(path: str | os.PathLike) -> dict[str, Any]:
    """Check a language-model directory without loading it: a ``config.json``, weights that are not only pickle
    files, and every file the manifest lists present with its recorded SHA-256. Returns the manifest (empty for a
    directory written by transformers itself); raises ValueError naming the problem."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a model directory (no config.json); expected a directory written by "
                         "expunge.save_model or a transformers save_pretrained")
    names = [f.name for f in path.iterdir() if f.is_file()]
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise ValueError(f"{path}: its weights are pickle files ({pickles[0]}); expunge never unpickles files. "
                             "Load the model yourself if you trust it and save it with save_pretrained("
                             "safe_serialization=True)")
        raise ValueError(f"{path}: holds no .safetensors weights")
    manifest_path = path / LM_MANIFEST
    if not manifest_path.is_file():
        return {}
    if manifest_path.stat().st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{manifest_path}: {manifest_path.stat().st_size} bytes; a manifest is at most "
                         f"{MAX_SIDECAR_BYTES} bytes")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{manifest_path}: not valid JSON ({type(e).__name__}: {e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{manifest_path}: expected a JSON object with a 'files' mapping")
    for name, digest in files.items():
        f = path / str(name)
        if Path(str(name)).name != name or not f.is_file():
            raise ValueError(f"{path}: file {name!r} listed in {LM_MANIFEST} is missing; save the model again")
        if _sha256(f) != digest:
            raise ValueError(f"{path}: {name} does not match the checksum {LM_MANIFEST} records: the file is "
                             "corrupt or was changed after saving; save the model again")
    return manifest


def load_language_model(path: str | os.PathLike) -> nn.Module:
    """A :class:`expunge.lm.CausalLM` from a directory written by :func:`save_model` (checked against its manifest,
    provenance restored) or by transformers' ``save_pretrained`` with a tokenizer; in eval mode; never downloads."""
    from .lm.models import CausalLM

    path = Path(path)
    check_language_model_files(path)
    model = CausalLM.from_pretrained(path)
    model.eval()
    return model
