"""expunge on a CUDA GPU: ResNet-18 throughput, batched ensembles, per-sample gradients, a tier-2 audit.

Run: ``python benchmarks/gpu.py`` on a machine with a CUDA GPU (``--quick`` for a short run of each part; every
size is an argument). Writes ``benchmarks/results/gpu.json`` (after each part, so a run stopped early keeps what it
measured). Where PyTorch sees no CUDA GPU it prints one line saying so, writes nothing and exits 0.

Data: CIFAR-shaped generated tensors (3×32×32, ``--examples`` = 50,000 by default, 10 classes whose label is the
argmax of a fixed random projection of the image), held as CPU tensors as any in-memory dataset is; batches move to
the GPU per step (pinned memory, non-blocking) inside ``expunge.training.fit``. Parts:

- ``check``: every registered method (``expunge.unlearn``) on a small CNN on the GPU, one short run each, the result
  checked to be on the GPU with finite weights; and one bf16 training run. A method that leaves a CPU tensor
  meeting a GPU one fails here with PyTorch's device-mismatch error.
- ``throughput``: the built-in ``resnet18`` (width 64, 11.2M parameters) trained with ``expunge.train`` for
  ``--epochs`` over all examples, ``precision`` fp32 and bf16: images per second (wall clock, after a warm-up).
- ``ensembles``: ``expunge.ensemble.train`` of K = 8 and 16 ResNet-18s (vmap over stacked weights) against one
  ResNet-18 trained alone on the same ``--ensemble-examples`` for one epoch: ``ratio`` = ensemble time ÷ (K × one
  model's time) (below 1: the ensemble is cheaper than K separate runs).
- ``per_sample``: the sum of squared per-example gradients (a diagonal Fisher) of ResNet-18 over ``--per-sample``
  examples: ``expunge.per_sample.iter_per_sample_grads`` (vmap of grad, ``--chunk`` examples at once) against a
  batch-size-1 loop; speed-up and relative difference.
- ``audit``: ``expunge.audit`` of finetune on a small CNN (width 16) with K = ``--audit-models`` (64: tier 2) on
  ``--audit-examples`` generated images: wall time per stage and the tier reached.

Seeded CUDA runs use deterministic algorithms where PyTorch has them (``expunge.devices``: deterministic cuDNN,
no cuDNN autotuning), so the timings are those of seeded, repeatable runs, not the fastest the GPU allows; each is
one run after a warm-up. The default sizes run in a few minutes on one
H200; ``--time-limit`` (default 540 s) skips the parts that would start after it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

OUT = Path(__file__).parent / "results" / "gpu.json"


def images(n: int, seed: int, classes: int = 10) -> Any:
    """``n`` CIFAR-shaped images (3×32×32, standard normal) with labels from a fixed random projection."""
    from expunge.data import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    w = torch.randn(3 * 32 * 32, classes, generator=torch.Generator().manual_seed(12345))
    y = (x.flatten(1) @ w).argmax(1)
    return ArrayDataset(x, y, task="classification", name=f"cifar-shaped-{n}")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - start


def part_check(a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import expunge
    from expunge.data import friedman
    from expunge.methods import registered

    data = images(a.check_examples, seed=1)
    forget, retain = expunge.split_forget(data, fraction=0.1, seed=0)
    cnn = expunge.train(expunge.model("cnn", data, width=8), data, epochs=2, seed=0, device=device)
    mlp = expunge.train(expunge.model("mlp", data, hidden=[64]), data, epochs=2, seed=0, device=device)
    rdata, _ = friedman(n=a.check_examples)
    rforget, rretain = expunge.split_forget(rdata, fraction=0.1, seed=0)
    reg = expunge.train(expunge.model("mlp", rdata, hidden=[32]), rdata, epochs=2, seed=0, device=device)
    quick = {"epochs": 1, "vae_epochs": 1, "proxy_epochs": 1, "msteps": 1}
    out: dict[str, Any] = {}
    for name, cls in sorted(registered().items()):
        if cls.needs_special_original:
            continue
        classify = "classification" in cls.tasks
        model, f, r = ((cnn if cls.requires_conv else mlp), forget, retain) if classify else (reg, rforget, rretain)
        args = {k: v for k, v in quick.items() if k in cls.Args.__dataclass_fields__}
        try:
            result, seconds = timed(lambda: expunge.unlearn(model, forget=f, retain=r, method=name, seed=0, **args))
            devices = {p.device for p in result.parameters()} | {b.device for b in result.buffers()}
            finite = all(bool(torch.isfinite(p).all()) for p in result.parameters())
            ok = devices == {device} and finite
            out[name] = {"ok": ok, "seconds": seconds, "devices": sorted(map(str, devices)), "finite": finite}
        except Exception as e:  # noqa: BLE001 - recorded, the other methods still run
            out[name] = {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        print(f"  check {name}: {'ok' if out[name]['ok'] else out[name]}", flush=True)
    if device.type == "cuda":
        bf16, seconds = timed(lambda: expunge.train(expunge.model("cnn", data, width=8), data, epochs=1, seed=0,
                                                    device=device, precision="bf16"))
        out["train_bf16"] = {"ok": all(bool(torch.isfinite(p).all()) for p in bf16.parameters()), "seconds": seconds}
    again = expunge.train(expunge.model("cnn", data, width=8), data, epochs=2, seed=0, device=device)
    out["repeatable_fp32"] = {"ok": all(torch.equal(p, q) for p, q in zip(cnn.parameters(), again.parameters()))}
    return {"methods_ok": all(v["ok"] for v in out.values()), "results": out}


def train_seconds(template: torch.nn.Module, data: Any, device: torch.device, *, epochs: int, batch_size: int,
                  precision: str = "fp32") -> float:
    """Wall time of ``expunge.training.fit`` alone (the loop ``expunge.train`` runs; without its checks and the
    fingerprint of the data) training a copy of ``template`` on ``device``."""
    import copy

    from expunge.devices import run_scope
    from expunge.training import Recipe, batches, fit

    model = copy.deepcopy(template).to(device)
    recipe = Recipe(epochs=epochs, lr=0.05, batch_size=batch_size)
    with run_scope(device, precision):
        _, seconds = timed(lambda: fit(model, batches(data, batch_size), recipe=recipe, seed=0, name="resnet18"))
    return seconds


def part_throughput(a: argparse.Namespace, device: torch.device, data: Any) -> dict[str, Any]:
    import expunge

    out: dict[str, Any] = {"examples": len(data), "epochs": a.epochs, "batch_size": a.batch_size}
    warm = torch.utils.data.Subset(data, range(min(len(data), 8 * a.batch_size)))
    template = expunge.model("resnet18", data, seed=0)
    for precision in ("fp32", "bf16") if device.type == "cuda" else ("fp32",):
        train_seconds(template, warm, device, epochs=1, batch_size=a.batch_size, precision=precision)
        seconds = train_seconds(template, data, device, epochs=a.epochs, batch_size=a.batch_size,
                                precision=precision)
        out[precision] = {"seconds": seconds, "images_per_second": len(data) * a.epochs / seconds}
        print(f"  resnet18 {precision}: {out[precision]['images_per_second']:,.0f} images/s", flush=True)
    if "bf16" in out:
        out["bf16_speedup"] = out["bf16"]["images_per_second"] / out["fp32"]["images_per_second"]
    return out


def part_ensembles(a: argparse.Namespace, device: torch.device, data: Any) -> dict[str, Any]:
    import expunge
    from expunge import ensemble as E

    subset = torch.utils.data.Subset(data, range(min(len(data), a.ensemble_examples)))
    template = expunge.model("resnet18", data, seed=0)
    warm = torch.utils.data.Subset(data, range(min(len(data), 4 * a.batch_size)))
    E.train(template, warm, seeds=[0, 1], epochs=1, batch_size=a.batch_size, device=device)
    one = train_seconds(template, subset, device, epochs=1, batch_size=a.batch_size)
    out: dict[str, Any] = {"examples": len(subset), "batch_size": a.batch_size, "one_model_seconds": one}
    for k in a.ensembles:
        try:
            _, seconds = timed(lambda: E.train(template, subset, seeds=list(range(k)), epochs=1,
                                               batch_size=a.batch_size, device=device))
            out[f"k{k}"] = {"seconds": seconds, "ratio": seconds / (k * one),
                            "member_images_per_second": k * len(subset) / seconds}
            if device.type == "cuda":
                out[f"k{k}"]["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        except torch.OutOfMemoryError as e:
            out[f"k{k}"] = {"error": f"out of memory: {' '.join(str(e).split())[:200]}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        print(f"  ensemble of {k}: {out[f'k{k}']}", flush=True)
    return out


def part_per_sample(a: argparse.Namespace, device: torch.device, data: Any) -> dict[str, Any]:
    import expunge
    from expunge.per_sample import iter_per_sample_grads, trainable

    model = expunge.model("resnet18", data, seed=0).to(device).eval()
    x, y = data.x[:a.per_sample], data.y[:a.per_sample]
    params = trainable(model)

    def vectorised() -> dict[str, torch.Tensor]:
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for _, grads in iter_per_sample_grads(model, x, y, chunk_size=a.chunk, hold_memory=False):
            for n, g in grads.items():
                total[n] += g.square().sum(0)
        return total

    def loop() -> dict[str, torch.Tensor]:
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(len(x)):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 1].to(device)), y[i:i + 1].to(device))
            for n, g in zip(params, torch.autograd.grad(loss, list(params.values()))):
                total[n] += g.square()
        return total

    vectorised(), loop()                      # warm-up (cuDNN, vmap tracing)
    v, tv = timed(vectorised)
    ref, tl = timed(loop)
    num = math.sqrt(sum(float((v[n] - ref[n]).square().sum()) for n in params))
    den = math.sqrt(sum(float(ref[n].square().sum()) for n in params))
    return {"examples": len(x), "chunk": a.chunk, "parameters": sum(p.numel() for p in params.values()),
            "vectorised_seconds": tv, "loop_seconds": tl, "speedup": tl / tv, "rel_diff": num / max(den, 1e-30)}


def part_audit(a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import expunge

    train, test = images(a.audit_examples, seed=2), images(max(100, a.audit_examples // 5), seed=3)
    forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
    template = expunge.model("cnn", train, width=16, seed=0)
    result, seconds = timed(lambda: expunge.audit(
        template, train, test, forget=forget, retain=retain, method="finetune", method_args={"epochs": 2},
        recipe={"epochs": a.audit_epochs, "batch_size": 128}, n_models=a.audit_models, seed=0, device=device))
    return {"examples": len(train), "n_models": a.audit_models, "epochs": a.audit_epochs, "tier": result.tier,
            "seconds": seconds, "stages": result.seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes for a short run of every part")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N")
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--ensembles", default="8,16", help="comma-separated ensemble sizes")
    p.add_argument("--ensemble-examples", type=int, default=10_000)
    p.add_argument("--per-sample", type=int, default=256)
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--check-examples", type=int, default=512)
    p.add_argument("--audit-models", type=int, default=64)
    p.add_argument("--audit-examples", type=int, default=4_000)
    p.add_argument("--audit-epochs", type=int, default=5)
    p.add_argument("--parts", default="check,throughput,ensembles,per_sample,audit")
    p.add_argument("--time-limit", type=float, default=540.0, help="seconds; later parts are skipped after it")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (to try the script "
                                                            "itself with tiny sizes; the numbers mean nothing)")
    a = p.parse_args(argv)
    if not torch.cuda.is_available() and not a.allow_cpu:
        print("benchmarks/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured, nothing "
              "written")
        return 0
    if a.quick:
        a.examples, a.ensemble_examples, a.per_sample, a.check_examples = 5_000, 2_000, 32, 256
        a.audit_models, a.audit_examples, a.audit_epochs, a.ensembles = 16, 1_000, 2, "4,8"
    a.ensembles = [int(k) for k in str(a.ensembles).split(",") if k]
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # before the first cuBLAS call (expunge.devices)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from expunge.devices import resolve_device

    device = resolve_device(a.device if torch.cuda.is_available() else "cpu")
    props = torch.cuda.get_device_properties(device) if device.type == "cuda" else None
    result: dict[str, Any] = {
        "benchmark": "gpu", "quick": a.quick, "args": {k: v for k, v in vars(a).items() if k != "out"},
        "environment": {"gpu": props.name if props else None,
                        "gpu_memory_gib": props.total_memory / 2 ** 30 if props else None, "torch": torch.__version__,
                        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                        "python": platform.python_version(),
                        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")},
        "parts": {}}
    out = Path(a.out)
    start = time.perf_counter()
    data = images(a.examples, seed=0) if {"throughput", "ensembles", "per_sample"} & set(a.parts.split(",")) else None
    parts = {"check": lambda: part_check(a, device), "throughput": lambda: part_throughput(a, device, data),
             "ensembles": lambda: part_ensembles(a, device, data),
             "per_sample": lambda: part_per_sample(a, device, data),
             "audit": lambda: part_audit(a, device)}
    for name in a.parts.split(","):
        if name not in parts:
            print(f"benchmarks/gpu.py: unknown part {name!r}; allowed: {', '.join(parts)}", file=sys.stderr)
            return 2
        if time.perf_counter() - start > a.time_limit:
            result["parts"][name] = {"skipped": f"the time limit of {a.time_limit:.0f}s was reached"}
            continue
        print(f"gpu benchmark: {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result["parts"][name] = {**parts[name](), "part_seconds": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - recorded; the other parts still run
            result["parts"][name] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"}
        result["wall_seconds"] = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
        tmp.replace(out)
        print(f"gpu benchmark: {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    print(json.dumps({k: v.get("error", "ok") if isinstance(v, dict) else v for k, v in result["parts"].items()}))
    print(f"wrote {out} in {result['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
