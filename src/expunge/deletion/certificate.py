"""Deletion certificates: what serving one deletion request did, recorded so that an auditor can check it.

A certificate is a JSON object (:func:`build_certificate`, written with a readable Markdown rendering by
:func:`write_certificate`) holding:

- ``request_id`` and ``time`` (UTC, ISO 8601); ``request``: the request expression as given (``group:17``);
- ``row_digests``: for every removed row, SHA-256 over a fresh random salt followed by the row's canonical
  encoding (:func:`row_bytes`): its features, label and group as expunge loaded them. The rows themselves are never
  recorded, and neither is the salt: the certificate holds only ``salt_sha256`` (its SHA-256, a commitment). The
  salt is written to a separate private file (:func:`write_salt`, ``salt.hex``, readable by its owner only) that the
  model owner keeps and may hand to an auditor: with it, whoever holds a row can recompute its digest and find it
  in the list (:func:`row_matches`); without it, the digests cannot be tested against guessed rows. With a fresh
  salt per request, digests of the same row in two certificates differ;
- ``method``, ``args``, ``seed``, ``exact`` (the request was served by exact removal, e.g. retraining SISA shards),
  ``previous_request`` (the request whose output model this one started from, if any);
- ``versions`` of expunge, torch and Python;
- ``input_model`` and ``output_model``: each file's SHA-256 (``files``) and one ``sha256`` over them all
  (:func:`file_sha256`); a ``.safetensors`` file is hashed together with its JSON sidecar, a model directory over
  every file in it. The aggregate is what ``sha256sum`` prints for the files, sorted by name, hashed again:
  ``LC_ALL=C sha256sum model.json model.safetensors | sha256sum`` (in a directory:
  ``find . -type f | sed 's|^./||' | LC_ALL=C sort | xargs sha256sum | sha256sum``);
- ``evidence``: the evidence summary in words and its tier, with the numbers behind it; ``wall_seconds``.

Files are written atomically (:func:`expunge.modelio.atomic_write`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "expunge-certificate/1"
ROW_ENCODING = "expunge-row/1"
ROW_DIGEST = ("sha256(salt || row), row = the expunge-row/1 encoding of the row's features, label and group: "
              "a canonical JSON header (dtypes, shapes, group) and a newline, then the little-endian bytes of the "
              "features and of the label")
MIN_SALT_BYTES = 16
JSON_NAME, MARKDOWN_NAME = "certificate.json", "certificate.md"
SALT_NAME = "salt.hex"                # the private salt file beside the certificate
MARKDOWN_DIGESTS = 50                 # row digests listed in the Markdown (the JSON lists all)
MARKDOWN_EVIDENCE = 40                # evidence numbers listed in the Markdown
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------------------------------------------ encodings
def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no spaces, UTF-8): the form every hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def load_json(text: str | bytes) -> Any:
    """``text`` parsed as strict JSON: NaN, Infinity and numbers out of a float's range are refused (ValueError),
    as :func:`canonical_json` cannot write them back."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def plain(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays become numbers and lists, paths and tuples strings
    and lists, non-finite floats the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; TypeError naming the
    place of anything else."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings; got {type(k).__name__} {k!r}")
            out[k] = plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):     # a torch tensor
        return plain(value.tolist(), where)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be recorded in a certificate; use numbers, strings, "
                    "lists and dicts")


def _tensor_bytes(t: Any) -> tuple[str, list[int], bytes]:
    """A tensor's dtype, shape and little-endian bytes."""
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:                               # numpy has no bfloat16: its bit pattern
        return "bfloat16", list(t.shape), t.view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.numpy()
    return str(t.dtype).removeprefix("torch."), list(t.shape), a.astype(a.dtype.newbyteorder("<")).tobytes()


def _group_value(value: Any) -> Any:
    """A group entry with its type, so 17, 17.0 and "17" encode differently."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    return ["other", f"{type(value).__name__}:{value}"]


def row_bytes(features: Any, label: Any, group: Any = None) -> bytes:
    """The canonical encoding (``expunge-row/1``) of one row: a JSON header naming the features' and the label's
    dtype and shape and the group (typed), a newline, then the features' and the label's little-endian bytes."""
    import torch

    x_type, x_shape, x_bytes = _tensor_bytes(torch.as_tensor(features))
    y_type, y_shape, y_bytes = _tensor_bytes(torch.as_tensor(label))
    header = {"encoding": ROW_ENCODING, "features": [x_type, x_shape], "label": [y_type, y_shape],
              "group": _group_value(group)}
    return canonical_json(header) + b"\n" + x_bytes + y_bytes


def _record_bytes(record: Any, group: Any) -> bytes:
    """The encoding of a text row: its record (question and answer, or document) and group."""
    return canonical_json({"encoding": ROW_ENCODING, "record": plain(record, "record"),
                           "group": _group_value(group)}) + b"\n"


def new_salt() -> bytes:
    """A fresh random salt (32 bytes) for one request's row digests."""
    return os.urandom(32)


def _check_salt(salt: Any) -> bytes:
    if not isinstance(salt, (bytes, bytearray)):
        raise TypeError(f"salt must be bytes (e.g. expunge.deletion.certificate.new_salt()); got "
                        f"{type(salt).__name__}")
    if len(salt) < MIN_SALT_BYTES:
        raise ValueError(f"salt has {len(salt)} bytes; at least {MIN_SALT_BYTES} random bytes are needed so that "
                         "the salt itself cannot be guessed")
    return bytes(salt)


def _check_indices(indices: Any, n: int) -> np.ndarray:
    idx = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be a one-dimensional array of row numbers (integers); got "
                        f"{idx.dtype} of shape {idx.shape}")
    idx = idx.astype(np.int64)
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise ValueError(f"row index {int(bad[0])} is out of range; the data has {n} rows (0 to {n - 1})")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"row index {int(uniq[counts > 1][0])} appears more than once; each removed row once")
    return idx


def row_digests(data: Any, indices: Any, salt: bytes) -> list[str]:
    """The salted SHA-256 (hex) of each removed row's content, in the order of ``indices`` (rows of ``data``).

    A row's content is its features, label and group as expunge holds them (:func:`row_bytes`; for text data, its
    record and group), so the digest depends on the row, not on its position. Streamed data is read a chunk at a
    time. The rows themselves appear nowhere in the result."""
    import torch

    from ..data.datasets import chunk_rows, resolve

    salt = _check_salt(salt)
    base, positions = resolve(data)
    idx = _check_indices(indices, len(positions))
    rows = positions.numpy()[idx]
    records = getattr(base, "records", None)
    if not (isinstance(records, list) and len(records) == len(base)):
        records = None
    groups = base.groups
    out: list[str] = []
    step = max(1, chunk_rows(base.x)) if not base.in_memory else max(1, len(rows))
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        at = torch.as_tensor(chunk)
        xs = None if records is not None else base.x[at]
        ys = base.y[at]
        for j, r in enumerate(chunk):
            group = None if groups is None else groups[r]
            content = _record_bytes(records[r], group) if records is not None else row_bytes(xs[j], ys[j], group)
            out.append(hashlib.sha256(salt + content).hexdigest())
    return out


# ----------------------------------------------------------------------------------------------- model files
def model_files(path: str | os.PathLike) -> dict[str, str]:
    """Each file of a saved model with its SHA-256: a ``.safetensors`` file and its ``.json`` sidecar (when there
    is one), any other file alone, or every file in a model directory (names relative to it, ``/``-separated)."""
    p = Path(path)
    if p.is_dir():
        files = sorted((f.relative_to(p).as_posix(), f) for f in p.rglob("*") if f.is_file())
        if not files:
            raise ValueError(f"model directory {p} holds no files")
    elif p.is_file():
        files = [(p.name, p)]
        side = p.with_suffix(".json")
        if p.suffix.lower() == ".safetensors" and side.is_file():
            files.append((side.name, side))
    else:
        raise ValueError(f"model file not found: {p}")
    from ..modelio import _sha256

    return {name: _sha256(f) for name, f in sorted(files)}


def manifest_sha256(files: dict[str, str]) -> str:
    """SHA-256 of the files' ``sha256sum`` lines (``<sha256>  <name>``), sorted by name."""
    return hashlib.sha256("".join(f"{files[n]}  {n}\n" for n in sorted(files)).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """One SHA-256 naming a saved model: over its files' hashes (:func:`model_files`, :func:`manifest_sha256`)."""
    return manifest_sha256(model_files(path))


def model_record(path: str | os.PathLike) -> dict[str, Any]:
    """What a certificate records of a model: its name, the aggregate SHA-256 and each file's."""
    files = model_files(path)
    return {"name": Path(path).name, "sha256": manifest_sha256(files), "files": files}


# ------------------------------------------------------------------------------------------------ certificates
def build_certificate(*, request_id: str, request: str, row_digests: list[str], salt_hex: str, method: str,
                      args: dict, seed: int, input_model: Path, output_model: Path, evidence: dict,
                      wall_seconds: float, exact: bool = False, previous_request: str | None = None) -> dict:
    """The certificate of one served request (see the module docstring); adds the time (UTC), the versions and
    the models' hashes. Raises ValueError/TypeError naming the first argument that cannot be recorded."""
    import torch

    from .. import __version__

    check_request_id(request_id, "request_id")
    if previous_request is not None:
        check_request_id(previous_request, "previous_request")
    if not isinstance(request, str) or not request.strip():
        raise ValueError(f"request must be the request expression (e.g. 'group:17'); got {request!r}")
    if not isinstance(row_digests, (list, tuple)) or not all(isinstance(d, str) and _HEX64.fullmatch(d)
                                                             for d in row_digests):
        raise ValueError("row_digests must be a list of SHA-256 hex digests (from row_digests())")
    if not isinstance(salt_hex, str) or not re.fullmatch(r"(?:[0-9a-f]{2})+", salt_hex) \
            or len(salt_hex) < 2 * MIN_SALT_BYTES:
        raise ValueError(f"salt_hex must be the salt as lowercase hex, at least {MIN_SALT_BYTES} bytes; got "
                         f"{str(salt_hex)[:40]!r}")
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a method name; got {method!r}")
    if not isinstance(args, dict):
        raise TypeError(f"args must be a dict of the method's arguments; got {type(args).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {type(seed).__name__}")
    if not isinstance(evidence, dict):
        raise TypeError(f"evidence must be a dict (summary, tier and numbers); got {type(evidence).__name__}")
    if isinstance(wall_seconds, bool) or not isinstance(wall_seconds, (int, float, np.floating)) \
            or not math.isfinite(wall_seconds) or wall_seconds < 0:
        raise ValueError(f"wall_seconds must be a finite number >= 0; got {wall_seconds!r}")
    for what, path in (("input_model", input_model), ("output_model", output_model)):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{what} must be the path of a saved model; got {type(path).__name__}")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False; got {exact!r}")
    cert = {
        "format": FORMAT,
        "request_id": request_id,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "request": request,
        "removed_rows": len(row_digests),
        "salt_sha256": hashlib.sha256(bytes.fromhex(salt_hex)).hexdigest(),
        "row_digest": ROW_DIGEST,
        "row_digests": list(row_digests),
        "method": method,
        "args": plain(args, "args"),
        "seed": int(seed),
        "exact": exact,
        "previous_request": previous_request,
        "versions": {"expunge": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "input_model": model_record(input_model),
        "output_model": model_record(output_model),
        "evidence": plain(evidence, "evidence"),
        "wall_seconds": float(wall_seconds),
    }
    check_certificate(cert)
    return cert


def check_request_id(value: Any, what: str = "request id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not allowed; expected 1-128 letters, digits, '.', '_', ':' or '-', "
                         "starting with a letter or digit")
    return value


def check_certificate(cert: Any) -> dict:
    """``cert`` if it has a certificate's shape (format, request id, output model hash) and is plain JSON data;
    ValueError/TypeError naming what is wrong otherwise."""
    if not isinstance(cert, dict):
        raise TypeError(f"a certificate is a dict (from build_certificate); got {type(cert).__name__}")
    if cert.get("format") != FORMAT:
        raise ValueError(f"not an expunge certificate: format is {cert.get('format')!r}, expected {FORMAT!r}")
    check_request_id(cert.get("request_id"), "the certificate's request_id")
    out = cert.get("output_model")
    if not isinstance(out, dict) or not isinstance(out.get("sha256"), str) or not _HEX64.fullmatch(out["sha256"]) \
            or not isinstance(out.get("name"), str) or not out["name"]:
        raise ValueError("the certificate's output_model must hold a name and a sha256")
    try:
        canonical_json(cert)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the certificate is not plain JSON data ({e})") from None
    return cert


def write_salt(salt: bytes, out_dir: str | os.PathLike) -> Path:
    """Write the request's salt as hex to ``out_dir/salt.hex``, readable by its owner only (mode 0600), atomically;
    returns its path. The certificate records only the salt's SHA-256: keep this file private and hand it to an
    auditor who is to check rows against the certificate (:func:`row_matches`)."""
    from ..modelio import atomic_write

    salt = _check_salt(salt)
    path = Path(out_dir) / SALT_NAME
    atomic_write(path, (salt.hex() + "\n").encode())      # a private temporary file (mkstemp: 0600), renamed
    os.chmod(path, 0o600)
    return path


def read_salt(path: str | os.PathLike) -> bytes:
    """The salt in a ``salt.hex`` file (or in ``path/salt.hex`` for a directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / SALT_NAME
    try:
        text = p.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"salt file {p} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not re.fullmatch(r"(?:[0-9a-f]{2})+", text):
        raise ValueError(f"salt file {p} does not hold a salt in lowercase hex")
    return _check_salt(bytes.fromhex(text))


def row_matches(cert: dict, salt: bytes, features: Any, label: Any, group: Any = None) -> bool:
    """Whether the row (``features``, ``label``, ``group`` as expunge loads them) is among the certificate's removed
    rows: its salted digest (:func:`row_bytes`) is in ``row_digests``. ``salt`` is the request's salt
    (:func:`read_salt` of the owner's ``salt.hex``); ValueError if it is not the salt the certificate commits to."""
    salt = _check_salt(salt)
    if not isinstance(cert, dict) or not isinstance(cert.get("row_digests"), list):
        raise TypeError("cert must be a certificate (a dict with row_digests, from read_certificate)")
    if hashlib.sha256(salt).hexdigest() != cert.get("salt_sha256"):
        raise ValueError(f"the salt does not match certificate {cert.get('request_id')!r} (its SHA-256 differs from "
                         "the certificate's salt_sha256): give that request's salt.hex")
    return hashlib.sha256(salt + row_bytes(features, label, group)).hexdigest() in cert["row_digests"]


def write_certificate(cert: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``certificate.json`` and its Markdown rendering ``certificate.md`` into ``out_dir`` (created if
    missing), each atomically; returns their paths."""
    from ..modelio import atomic_write

    check_certificate(cert)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"certificate directory {out} is a file; expected a directory")
    text = (json.dumps(cert, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    markdown = certificate_markdown(cert).encode()
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    atomic_write(json_path, text)
    atomic_write(md_path, markdown)
    return json_path, md_path


def read_certificate(path: str | os.PathLike) -> dict:
    """A certificate read from its JSON file and checked (:func:`check_certificate`)."""
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    try:
        cert = load_json(p.read_bytes())
    except OSError as e:
        raise ValueError(f"certificate {p} cannot be read ({e.strerror})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"certificate {p} is not valid JSON ({e})") from None
    try:
        return check_certificate(cert)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{p}: {e}") from None


# ------------------------------------------------------------------------------------------------- Markdown
def _code(value: Any) -> str:
    """``value`` as inline code safe inside a Markdown table cell."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _text(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _flat(value: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """The scalars of nested dicts as (dotted key, value) pairs."""
    out: list[tuple[str, Any]] = []
    for k, v in value.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif v is None or isinstance(v, (bool, int, float, str)):
            out.append((f"{prefix}{k}", v))
    return out


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def certificate_markdown(cert: dict) -> str:
    """A readable rendering of a certificate: what was asked, how it was served, the evidence, the models' hashes
    and how to check them."""
    ev = cert.get("evidence") or {}
    versions = cert.get("versions") or {}
    inp, out = cert.get("input_model") or {}, cert.get("output_model") or {}
    digests = cert.get("row_digests") or []
    args = json.dumps(cert.get("args") or {}, sort_keys=True)
    lines = [
        f"# Deletion certificate {_code(cert.get('request_id'))}",
        "",
        "| | |",
        "|---|---|",
        f"| request | {_code(cert.get('request'))}: {cert.get('removed_rows', len(digests))} rows removed |",
        f"| served | {_text(cert.get('time'))} (UTC) in {float(cert.get('wall_seconds') or 0):.1f} s |",
        f"| method | {_code(cert.get('method'))}, arguments {_code(args)}, seed {cert.get('seed')} |",
        f"| removal | {'exact (the model was retrained without the rows)' if cert.get('exact') else 'approximate'} |",
        f"| evidence | {_text(ev.get('summary') or ev.get('headline') or 'none recorded')} |",
        f"| evidence tier | {_text(ev.get('statement') or ev.get('tier', 'none'))} |",
        f"| follows request | {_code(cert['previous_request']) if cert.get('previous_request') else 'none'} |",
        f"| input model | {_code(inp.get('name'))}, sha256 {_code(inp.get('sha256'))} |",
        f"| output model | {_code(out.get('name'))}, sha256 {_code(out.get('sha256'))} |",
        f"| software | expunge {_text(versions.get('expunge'))}, torch {_text(versions.get('torch'))}, "
        f"Python {_text(versions.get('python'))} |",
    ]
    numbers = _flat({k: v for k, v in ev.items() if k not in ("summary", "headline", "statement", "tier")})
    if numbers:
        lines += ["", "## Evidence", ""] + [f"- {_text(k)}: {_text(_number(v))}"
                                            for k, v in numbers[:MARKDOWN_EVIDENCE]]
        if len(numbers) > MARKDOWN_EVIDENCE:
            lines.append(f"- ... {len(numbers) - MARKDOWN_EVIDENCE} more in the JSON certificate")
    lines += ["", "## Removed rows", "",
              "The rows are not recorded. Each removed row is recorded as SHA-256 over a random salt followed by the "
              "row's canonical encoding (its features, label and group). The salt is not in this certificate: the "
              "model owner keeps it (`salt.hex`, written beside the certificate) and can hand it to an auditor, who "
              "checks it against its SHA-256 below and then finds a row's digest "
              "(`expunge.deletion.certificate.row_matches`). Without the salt the digests reveal nothing about "
              "the rows.", "",
              f"Salt SHA-256: {_code(cert.get('salt_sha256'))}", ""]
    lines += [f"- `{d}`" for d in digests[:MARKDOWN_DIGESTS]]
    if len(digests) > MARKDOWN_DIGESTS:
        lines.append(f"- ... {len(digests) - MARKDOWN_DIGESTS} more in the JSON certificate")
    lines += ["", "## Model files", "", "| model | file | sha256 |", "|---|---|---|"]
    for role, rec in (("input", inp), ("output", out)):
        for name, sha in (rec.get("files") or {}).items():
            lines.append(f"| {role} | {_code(name)} | `{_text(sha)}` |")
    lines += ["", "Each model's sha256 is the SHA-256 of its files' `sha256sum` lines sorted by name, e.g. "
              "`LC_ALL=C sha256sum model.json model.safetensors | sha256sum` for a model file and its sidecar.", ""]
    return "\n".join(lines)
