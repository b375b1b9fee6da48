"""The numbers behind each of the comparator's views, for one experiment (a row of :class:`.sources.Workspace`).

Every view is a function ``view(ws, id, **params) -> dict`` returning JSON-ready values (lists, floats, strings;
NaN as None), computed on demand and cached in memory and on disk under ``$EXPUNGE_CACHE/ui/views``, keyed by the
experiment id, the view, its parameters, the experiment's forget request, the contents of a linked audit, the
checksums, sizes and modification times of the model files it reads (a retrained or replaced model gives a new
key) and expunge's version. Views are computed one at a time (they share the workspace's models); an empty result
(CKA without a layer, say) is not cached. The models are the experiment's ``model`` (the unlearned
one; for the original and oracle rows of a bench, that model itself), its ``original`` and its ``oracle`` (the
model retrained without the forget set); a role the experiment lacks is given as None.

- :func:`classwise` (Contrast): accuracy (%) per class of the model, the original and the oracle on the forget,
  retain and test sets, with the number of examples of each class (None where a set has no example of a class).
  Weighting a set's accuracies by its counts gives ``expunge.evaluate``'s accuracy on that set.
- :func:`matrix` (Contrast): prediction matrices on one set: ``[true class][predicted class]`` counts.
- :func:`cka` (Contrast): layer-wise linear CKA (Kornblith et al., "Similarity of Neural Network
  Representations Revisited", ICML 2019) between the model's activations and the original's, and the oracle's, at
  each ``nn.Linear``, convolution and residual or transformer block output, on a fixed seeded sample of up to
  :data:`CKA_SAMPLE` training examples (half forget, the rest retain where there are enough), overall and per set.
  CKA is 1 for representations equal up to an orthogonal transform and isotropic scaling, near 0 for unrelated
  ones: where the model's forget-set representation stays near the original's, the method did not reach the
  layers. Convolution outputs larger than :data:`CKA_MAX_FEATURES` values are average-pooled spatially first.
- :func:`projection` (Contrast, instance view): a 2-D PCA, t-SNE (scikit-learn) or UMAP (when ``umap`` is
  installed) of the model's penultimate features (the input of its last ``nn.Linear``) on a fixed seeded sample of
  up to ``n`` training examples that always holds the forget examples (up to three quarters of the sample when
  there are more); the sample depends only on the forget set, so every model of an experiment, and two
  experiments with the same forget set, share the ``index`` list and points can be linked across them.
- :func:`thumb`: a PNG of one training image (image data only; None otherwise).
- :func:`attack` (Attack): per forget example, the entropy of the softmax and the confidence (the softmax
  probability of the true class, p_y, as everywhere in :mod:`expunge.metrics`) under the model and under the
  oracle: the raw values of a threshold attack telling the model's outputs from retraining's. The page computes
  FPR, FNR, ε and the attack score per threshold from them. Where an audit of the same request exists, its
  per-example ε (the NeurIPS 2023 challenge's), KLoM and U-LiRA accuracy and its most exposed examples.
- :func:`facts` (language): per forget fact, the question and answer, the greedy answers of the original, the
  model and the oracle, and the model's truth ratio, answer probability and Min-K%++ score (TOFU and the text
  membership attacks, :mod:`expunge.lm`).
- :func:`samples` (generation): one sample grid (:func:`expunge.gen.report.sample_grid`) per model, each drawn from
  the same noise, as PNG data URIs.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .sources import ROLES, Workspace, cache_dir

log = logging.getLogger(__name__)

SPLITS = ("forget", "retain", "test")
CKA_SAMPLE = 500
CKA_MAX_FEATURES = 4096
SAMPLE_SEED = 0
PROJECTIONS = ("pca", "tsne", "umap")
MAX_PROJECTION = 2000      # the paper's instance view shows 2,000 points; the API offers 500, 1000 and 2000
THUMB_MIN_PX = 32
FACTS_MAX = 50
CACHE_VERSION = "2"        # the layout of the cached views; expunge's version is part of every key too

_memory: OrderedDict[str, Any] = OrderedDict()
_memory_lock = threading.Lock()
_compute_lock = threading.RLock()   # views run the workspace's shared models (hooks, eval mode): one at a time
_MEMORY_ITEMS = 256


# --------------------------------------------------------------------------------------------------------- cache
def _cached(ws: Workspace, id: str, view: str, params: dict[str, Any], roles: tuple[str, ...],
            compute: Callable[[], dict[str, Any]], required: str) -> dict[str, Any]:
    """``compute()``, cached by (experiment id, view, params, forget request and audit, model checksums, expunge's
    version). A result whose ``required`` list is empty (CKA without a layer, say) is returned but not cached."""
    from .. import __version__

    prints = {r: ws.fingerprint(id, r) if ws.has(id, r) else None for r in roles}
    key = hashlib.sha256(json.dumps({"id": id, "view": view, "params": params, "models": prints, "data": ws.key(id),
                                     "v": CACHE_VERSION, "expunge": __version__},
                                    sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = cache_dir() / "views" / f"{key}.json"
    result = _stored(key, path)
    if result is not None:
        return result
    with _compute_lock:
        result = _stored(key, path)          # computed by another request while this one waited
        if result is not None:
            return result
        result = _jsonable(compute())
        if not result.get(required):
            log.warning("view %s of %s is empty (no %s); not cached", view, id, required)
            return result
        try:
            from ..modelio import atomic_write

            atomic_write(path, json.dumps(result, separators=(",", ":")).encode())
        except OSError as e:       # a read-only cache: computed again next time
            log.warning("could not cache view %s: %s", path, e)
        _remember(key, result)
    return result


def _stored(key: str, path: Path) -> dict[str, Any] | None:
    """The view cached under ``key`` in memory, else on disk (then kept in memory too), else None."""
    with _memory_lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    _remember(key, result)
    return result


def _remember(key: str, result: dict[str, Any]) -> None:
    with _memory_lock:
        _memory[key] = result
        while len(_memory) > _MEMORY_ITEMS:
            _memory.popitem(last=False)


def clear_memory() -> None:
    """Forget the views cached in memory (the disk cache stays)."""
    with _memory_lock:
        _memory.clear()


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, torch.Tensor):
        return _jsonable(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def _roles(ws: Workspace, id: str) -> dict[str, nn.Module | None]:
    return {r: (ws.model(id, r) if ws.has(id, r) else None) for r in ROLES}


def _subset(data: Any, name: str) -> Any:
    return {"forget": data.forget, "retain": data.retain, "test": data.test}[name]


def _classes(data: Any) -> tuple[int, list[str]]:
    from ..data.datasets import resolve

    base, _ = resolve(data.train)
    n = int(getattr(base, "num_classes", 0) or 0)
    if not n:
        from ..data.datasets import targets

        n = int(max(int(targets(data.train).max()), int(targets(data.test).max())) + 1)
    names = data.class_names if data.class_names and len(data.class_names) == n else [str(c) for c in range(n)]
    return n, names


def _predictions(model: nn.Module, subset: Any) -> torch.Tensor:
    from ..metrics import predict

    return predict(model, subset)


# ------------------------------------------------------------------------------------------------------ classwise
def classwise(ws: Workspace, id: str) -> dict[str, Any]:
    """Accuracy (%) per class of the model, original and oracle on the forget, retain and test sets."""
    def compute() -> dict[str, Any]:
        from ..data.datasets import targets

        data = ws.data(id)
        n, names = _classes(data)
        models = _roles(ws, id)
        splits, counts = {}, {}
        for split in SPLITS:
            subset = _subset(data, split)
            y = targets(subset).long()
            count = torch.bincount(y, minlength=n)[:n]
            counts[split] = count.tolist()
            splits[split] = {}
            for role, model in models.items():
                if model is None:
                    splits[split][role] = None
                    continue
                right = (_predictions(model, subset).argmax(-1) == y).long()
                hits = torch.bincount(y, weights=right.double(), minlength=n)[:n]
                splits[split][role] = [None if c == 0 else float(100.0 * h / c) for h, c in
                                       zip(hits.tolist(), count.tolist())]
        return {"classes": names, "splits": splits, "counts": counts}

    return _cached(ws, id, "classwise", {}, ROLES, compute, required="classes")


# --------------------------------------------------------------------------------------------------------- matrix
def matrix(ws: Workspace, id: str, split: str = "forget") -> dict[str, Any]:
    """Prediction matrices ``[true][predicted]`` (counts) of the model, the oracle and the original on ``split``.
    A model with more outputs than the data have classes widens every matrix (and ``classes``) to its outputs, so a
    prediction of an extra class keeps a column of its own."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; allowed: {', '.join(SPLITS)}")

    def compute() -> dict[str, Any]:
        from ..data.datasets import targets

        data = ws.data(id)
        n, names = _classes(data)
        subset = _subset(data, split)
        y = targets(subset).long()
        logits = {role: (None if model is None else _predictions(model, subset))
                  for role, model in _roles(ws, id).items()}
        k = max([n, *(int(z.shape[-1]) for z in logits.values() if z is not None)])
        out: dict[str, Any] = {"classes": names + [str(c) for c in range(n, k)], "split": split}
        for role, z in logits.items():
            out[role] = None if z is None else \
                torch.bincount(y * k + z.argmax(-1).long(), minlength=k * k).reshape(k, k).tolist()
        return out

    return _cached(ws, id, "matrix", {"split": split}, ROLES, compute, required="classes")


# ------------------------------------------------------------------------------------------------------------ CKA
def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of two representations of the same ``n`` examples (rows): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    with K = XXᵀ, L = YYᵀ of the column-centred features (Kornblith et al. 2019, eq. 5), in float64; NaN when either
    representation is constant."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(x) != len(y):
        raise ValueError(f"linear_cka needs the same examples in both representations; got {len(x)} and {len(y)} rows")
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    if min(x.shape[1], y.shape[1]) <= len(x):        # feature space: ||YᵀX||² / (||XᵀX|| ||YᵀY||)
        cross = np.linalg.norm(y.T @ x) ** 2
        norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    else:                                              # example space: tr(KL) / sqrt(tr(KK) tr(LL))
        k, l_ = x @ x.T, y @ y.T
        cross = float(np.sum(k * l_))
        norm = math.sqrt(float(np.sum(k * k)) * float(np.sum(l_ * l_)))
    return float(cross / norm) if norm > 0 else float("nan")


def _is_layer(module: nn.Module) -> bool:
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return True
    name = type(module).__name__
    return name.endswith("Block") or (name.endswith("Layer") and "Norm" not in name)


def activations(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per layer (``nn.Linear``, convolution, ``*Block``/``*Layer`` modules, by dotted name, in the order they run):
    its output on ``x``, one flattened row per example; a layer that runs more than once per forward pass is left
    out; convolution outputs above :data:`CKA_MAX_FEATURES` values are average-pooled spatially."""
    from ..devices import model_device, move
    from ..per_sample import eval_mode

    named = [(n, m) for n, m in model.named_modules() if n and _is_layer(m)]
    outs: dict[str, list[torch.Tensor]] = {}
    calls: dict[str, int] = {}
    order: list[str] = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            t = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(t, torch.Tensor):
                return
            calls[name] = calls.get(name, 0) + 1
            if name not in order:
                order.append(name)
            t = t.detach().float()
            if t.ndim >= 3 and t[0].numel() > CKA_MAX_FEATURES:
                t = _pooled(t)
            outs.setdefault(name, []).append(t.reshape(len(t), -1).cpu())
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in named]
    batches = 0
    try:
        with torch.no_grad(), eval_mode(model):
            device = model_device(model)
            for chunk in x.split(batch_size):
                model(move(chunk, device))
                batches += 1
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(outs[n]) for n in order if calls.get(n) == batches}


def _pooled(t: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    channels, spatial = t.shape[1], t.shape[2:]
    side = max(1, int((CKA_MAX_FEATURES / channels) ** (1 / len(spatial))))
    size = tuple(min(s, side) for s in spatial)
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}.get(len(spatial))
    return pool(t, size) if pool is not None else t.flatten(1)[:, :CKA_MAX_FEATURES]


def cka_sample(data: Any, size: int = CKA_SAMPLE, seed: int = SAMPLE_SEED) -> dict[str, list[int]]:
    """The fixed sample CKA is computed on: up to ``size // 2`` forget examples, the rest retain examples (seeded;
    positions in the training set)."""
    rng = np.random.default_rng(seed)
    forget = np.asarray(data.forget_index, dtype=np.int64)
    retain = np.asarray(data.retain_index, dtype=np.int64)
    nf = min(len(forget), size // 2)
    f = np.sort(rng.choice(forget, nf, replace=False)) if nf < len(forget) else forget
    nr = min(len(retain), size - nf)
    r = np.sort(rng.choice(retain, nr, replace=False)) if nr < len(retain) else retain
    return {"forget": f.tolist(), "retain": r.tolist()}


def cka(ws: Workspace, id: str) -> dict[str, Any]:
    """Layer-wise linear CKA of the model against the original and against the oracle (see the module docstring)."""
    def compute() -> dict[str, Any]:
        from ..data.datasets import features

        data = ws.data(id)
        sample = cka_sample(data)
        index = sample["forget"] + sample["retain"]
        x = features(torch.utils.data.Subset(data.train, index))
        models = _roles(ws, id)
        acts = {r: activations(m, x) for r, m in models.items() if m is not None}
        layers = [n for n in acts["model"] if all(n in a and a[n].shape[1] == acts["model"][n].shape[1]
                                                  for a in acts.values())]
        nf = len(sample["forget"])
        parts = {"all": slice(None), "forget": slice(0, nf), "retain": slice(nf, None)}
        out: dict[str, Any] = {"layers": layers, "n": {"forget": nf, "retain": len(sample["retain"])}, "splits": {}}
        for part, rows in parts.items():
            res = {}
            for ref in ("original", "oracle"):
                if ref not in acts or (part == "forget" and nf < 3) or (part == "retain" and len(index) - nf < 3):
                    res[f"vs_{ref}"] = None
                    continue
                res[f"vs_{ref}"] = [linear_cka(acts["model"][n][rows].numpy(), acts[ref][n][rows].numpy())
                                    for n in layers]
            if part == "all":
                out.update(res)
            else:
                out["splits"][part] = res
        return out

    return _cached(ws, id, "cka", {"sample": CKA_SAMPLE}, ROLES, compute, required="layers")


# ----------------------------------------------------------------------------------------------------- projection
def projection_sample(data: Any, n: int, seed: int = SAMPLE_SEED) -> list[int]:
    """Positions in the training set of the instance view's sample: every forget example (a seeded subset when
    they would leave less than a quarter of ``n`` to the retain set), the rest of ``n`` drawn from the retain set
    (seeded), sorted."""
    _check_points(n)
    rng = np.random.default_rng(seed)
    forget = np.asarray(data.forget_index, dtype=np.int64)
    retain = np.asarray(data.retain_index, dtype=np.int64)
    quota = n - min(len(retain), n // 4)
    f = forget if len(forget) <= quota else rng.choice(forget, quota, replace=False)
    k = min(len(retain), n - len(f))
    r = retain if k == len(retain) else rng.choice(retain, k, replace=False)
    return sorted(int(i) for i in np.concatenate([f, r]))


def _check_points(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_PROJECTION:
        raise ValueError(f"n={n!r} is not allowed; expected an integer from 2 to {MAX_PROJECTION}")


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last ``nn.Linear`` (its representation) on ``x``; the flattened input itself for a
    model that is one linear layer."""
    from ..devices import model_device, move
    from ..methods._embedding import embed, final_linear_of
    from ..per_sample import eval_mode

    try:
        _, head = final_linear_of(model, x[:1], method="projection")
    except ValueError:
        head = None
    out = []
    with torch.no_grad(), eval_mode(model):
        for chunk in x.split(512):
            chunk = move(chunk, model_device(model))
            if head is None:
                out.append(model(chunk).flatten(1).float().cpu())
                continue
            from ..methods._embedding import Split

            out.append(embed(model, Split("", head, "input"), chunk).float().cpu())
    return torch.cat(out)


def projection(ws: Workspace, id: str, method: str = "pca", n: int = 2000, role: str = "model") -> dict[str, Any]:
    """A 2-D projection of the ``role`` model's penultimate features on the experiment's fixed sample."""
    if method not in PROJECTIONS:
        raise ValueError(f"method={method!r} is not allowed; allowed: {', '.join(PROJECTIONS)}")
    if method == "umap":
        import importlib.util

        if importlib.util.find_spec("umap") is None:
            raise ValueError("method='umap' needs the umap-learn package; use pca or tsne, or pip install umap-learn")
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not allowed; allowed: {', '.join(ROLES)}")
    _check_points(n)

    def compute() -> dict[str, Any]:
        from ..data.datasets import features, targets

        data = ws.data(id)
        index = projection_sample(data, n)
        subset = torch.utils.data.Subset(data.train, index)
        x = features(subset)
        model = ws.model(id, role)
        feats = penultimate(model, x).double().numpy()
        points = reduce(feats, method)
        y = targets(subset)
        with torch.no_grad():
            pred = _predictions(model, subset)
        task = data.task
        forget = set(data.forget_index)
        return {"method": method, "points": np.round(points, 5).tolist(), "index": index,
                "label": y.tolist(), "forget": [i in forget for i in index],
                "predicted": (pred.argmax(-1) if task == "classification" else pred.squeeze(-1)).tolist(),
                "images": is_image(data), "role": role}

    return _cached(ws, id, "projection", {"method": method, "n": n, "role": role}, (role,), compute,
                   required="points")


def reduce(features: np.ndarray, method: str, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``[n, d]`` features to ``[n, 2]`` points with PCA, t-SNE or UMAP (seeded)."""
    n = len(features)
    features = np.nan_to_num(features)
    if features.shape[1] < 2:
        features = np.concatenate([features, np.zeros((n, 2 - features.shape[1]))], axis=1)
    if n < 3:
        return features[:, :2] - features[:, :2].mean(0)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(features)
    import umap   # checked by the caller

    return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(features)


# --------------------------------------------------------------------------------------------------------- images
def is_image(data: Any) -> bool:
    """Whether the training examples are images (``[C, H, W]`` with 1 or 3 channels)."""
    from ..data.datasets import first_rows

    try:
        x = first_rows(data.train)
    except (ValueError, TypeError, IndexError):
        return False
    return x.ndim == 4 and x.shape[1] in (1, 3) and x.dtype.is_floating_point


def thumb(ws: Workspace, id: str, index: int) -> bytes | None:
    """A PNG of training example ``index`` (min-max scaled, enlarged to at least :data:`THUMB_MIN_PX` pixels), or
    None when the data are not images or there is no such example."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return None
    try:
        data = ws.data(id)
    except ValueError:
        return None
    if index >= len(data.train) or not is_image(data):
        return None
    from ..data.datasets import features

    img = features(torch.utils.data.Subset(data.train, [index]))[0].float()
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    scale = max(1, min(8, -(-THUMB_MIN_PX // max(img.shape[1:]))))
    img = img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return png(pixels)


def png(pixels: np.ndarray) -> bytes:
    """A PNG file (Pillow) of ``pixels``: ``[H, W]`` or ``[H, W, 1]`` (grey) or ``[H, W, 3]`` (RGB) uint8."""
    from PIL import Image

    a = np.asarray(pixels)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)):
        raise ValueError(f"png needs [H, W], [H, W, 1] or [H, W, 3] uint8 pixels; got {a.dtype} {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buffer, format="PNG")      # mode L or RGB, from the shape
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------- attack
def output_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """Per example: the entropy (nats) of the softmax and the confidence p_y, the softmax probability of the true
    class (:func:`expunge.metrics.scores.entropy` and :func:`~expunge.metrics.scores.confidence`)."""
    from ..metrics import scores

    z = logits.double().numpy()
    return {"entropy": scores.entropy(z).tolist(), "confidence": scores.confidence(z, labels).tolist()}


def attack(ws: Workspace, id: str) -> dict[str, Any]:
    """Entropy and confidence of each forget example under the model and the oracle, and the audit's per-example
    evidence where an audit of the same request exists (see the module docstring)."""
    def compute() -> dict[str, Any]:
        from ..data.datasets import targets

        data = ws.data(id)
        labels = targets(data.forget)
        out: dict[str, Any] = {"forget": {}, "index": list(data.forget_index), "label": labels.tolist(),
                               "images": is_image(data)}
        for role in ("model", "oracle"):
            out["forget"][role] = (output_scores(_predictions(ws.model(id, role), data.forget), labels)
                                   if ws.has(id, role) else None)
        out["audit"] = audit_examples(ws.audit_file(id))
        return out

    return _cached(ws, id, "attack", {}, ("model", "oracle"), compute, required="index")


def audit_examples(path: Path | None) -> dict[str, Any] | None:
    """From an ``audit.json``: per forget example its position, ε, KLoM and U-LiRA accuracy, and the most exposed
    examples' positions (highest ε first)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ex = data.get("examples") or {}
    idx = ex.get("index") or []
    col = lambda k: ex.get(k) or [None] * len(idx)
    examples = [{"index": int(i), "epsilon": e, "klom": k, "ulira": u}
                for i, e, k, u in zip(idx, col("epsilon"), col("klom"), col("ulira_accuracy"))]
    exposed = [int(d["index"]) for d in data.get("most_exposed") or [] if isinstance(d, dict) and "index" in d]
    return {"examples": examples, "most_exposed": exposed, "tier": data.get("evidence_tier"),
            "n_models": data.get("n_models"), "verdict": data.get("verdict")}


# ---------------------------------------------------------------------------------------------------- language
def facts(ws: Workspace, id: str, limit: int = FACTS_MAX) -> dict[str, Any]:
    """Per distinct forget question (up to ``limit``, a seeded choice when there are more): the question, its
    answer, the greedy answers of the original, the model and the oracle, and under the model the truth ratio R
    (TOFU: correct over perturbed answers; None without perturbed answers), the answer probability (exp of the mean
    answer-token NLL) and the Min-K%++ score of its answer tokens (higher: more member-like)."""
    def compute() -> dict[str, Any]:
        from ..data.text import prompt_ids
        from ..lm import attacks as A
        from ..lm import metrics as M
        from ..lm.evaluate import (ScoredRows, max_positions, mean_answer_nll, padding_id, question_groups,
                                   row_statistics, scored_rows, truth_ratios)
        from ..lm.generate import greedy_generate
        from ..lm.models import as_language_model

        data = ws.data(id)
        everything = scored_rows("forget", data.forget, None, np.random.default_rng(SAMPLE_SEED))
        firsts, _ = question_groups(everything)
        if len(firsts) > limit:
            firsts = sorted(np.random.default_rng(SAMPLE_SEED).choice(firsts, limit, replace=False).tolist())
        rows = ScoredRows("forget", everything.base, everything.idx[firsts], [everything.records[i] for i in firsts])
        tok = rows.base.tokenizer
        models = {r: as_language_model(m, data.forget) for r, m in _roles(ws, id).items() if m is not None}
        prompts = [prompt_ids(tok, r["question"]) for r in rows.records]
        answers = {}
        for role, m in models.items():
            m.eval()
            out = greedy_generate(m, prompts, max_new_tokens=32, eos_token_id=tok.eos_token_id,
                                  pad_token_id=padding_id(tok), batch_size=16, max_length=max_positions(m))
            answers[role] = [tok.decode(o, skip_special_tokens=True).strip() for o in out]
        model = models["model"]
        stats = row_statistics(model, rows.base.x[rows.idx], rows.base.y[rows.idx], A.MIN_K, 16, membership=True)
        pairs = [(r["question"], r["answer"]) for r in rows.records]
        nll = mean_answer_nll(model, tok, pairs, rows.base.max_length, 16)
        probability = M.answer_probability(nll)
        truth = truth_ratios(model, rows, 16)
        with_perturbed = [i for i, r in enumerate(rows.records) if r.get("perturbed_answers")]
        ratios = dict(zip(with_perturbed, truth["ratios"])) if truth is not None else {}
        out = []
        for i, rec in enumerate(rows.records):
            out.append({"index": int(rows.idx[i]), "question": rec["question"], "answer": rec["answer"],
                        **{r: (answers[r][i] if r in answers else None) for r in ROLES},
                        "truth_ratio": ratios.get(i), "probability": float(probability[i]),
                        "mink_pp": float(stats["min_k_plus_plus"][i])})
        return {"facts": out}

    return _cached(ws, id, "facts", {"limit": limit}, ROLES, compute, required="facts")


# -------------------------------------------------------------------------------------------------- generation
def samples(ws: Workspace, id: str, per_class: int = 4, seed: int = 0) -> dict[str, Any]:
    """One sample grid per model (original, model, oracle), every class, the same noise for all three."""
    def compute() -> dict[str, Any]:
        from ..gen.report import sample_grid

        data = ws.data(id)
        n, names = _classes(data)
        classes = list(range(n))
        grids = {}
        for role, model in _roles(ws, id).items():
            if model is None:
                grids[role] = None
                continue
            png_bytes = sample_grid({role: model}, classes, per_class=per_class, seed=seed, class_names=names)
            grids[role] = "data:image/png;base64," + base64.b64encode(png_bytes).decode()
        return {"classes": names, "grids": grids, "per_class": per_class, "seed": seed}

    return _cached(ws, id, "samples", {"per_class": per_class, "seed": seed}, ROLES, compute, required="classes")


VIEWS = ("classwise", "matrix", "cka", "projection", "attack", "facts", "samples")

__all__ = ["classwise", "matrix", "cka", "projection", "thumb", "attack", "facts", "samples", "linear_cka",
           "activations", "cka_sample", "projection_sample", "penultimate", "reduce", "png", "output_scores",
           "audit_examples", "clear_memory", "VIEWS"]
