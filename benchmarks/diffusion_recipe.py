"""How well the embedded class-conditional diffusion model learns its images, and how fast.

Trains ``expunge.gen.unet()`` (~0.7M parameters at the default widths (32, 64), T = 200) with ``expunge.train`` on
the training images (``expunge.data.for_generation``: scikit-learn's digits at 8x8 by default, or Fashion-MNIST from
Debian's package resized to ``--size``) for each number of epochs given, draws ``--per-class`` DDIM samples per
class (25 steps, guidance 2) and prints the share that the judge (``expunge.gen.judge``: a classifier trained here
on the real images at the same size, its accuracy on the test images printed too) assigns to the conditioning
class, per class and overall, with the training's CPU seconds. ``--subset N`` trains the diffusion model on a
seeded draw of N training images (Fashion-MNIST only); the judge always learns from all of them (60,000) and is
tested on all 10,000 test images.
One process, one thread; the machine may be shared, so compare runs made together.

    python benchmarks/diffusion_recipe.py [--epochs 20 40 60] [--lr 2e-3] [--per-class 50] [--json out.json]
    python benchmarks/diffusion_recipe.py --data fashion_mnist --size 16 --subset 10000 --epochs 4 8 \\
        --json benchmarks/results/diffusion_recipe_fashion16.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import expunge  # noqa: E402
from expunge.gen.judge import judge  # noqa: E402


def load(name: str, size: int | None, subset: int | None, seed: int):
    """(training images, the judge's training images, test images) for generation, and a note of what was used:
    the judge always learns from every training image, the diffusion model from ``subset`` of them where given."""
    if name == "digits":
        if subset is not None:
            raise SystemExit("--subset applies to fashion_mnist only (digits has 1,437 training images)")
        train, test = expunge.data.digits()
        whole = train
    else:
        train, test = expunge.data.fashion_mnist(subset=subset, seed=seed)
        whole = expunge.data.fashion_mnist()[0] if subset is not None else train
    data, held = expunge.data.for_generation(train, size=size), expunge.data.for_generation(test, size=size)
    judged = expunge.data.for_generation(whole, size=size) if whole is not train else data
    return data, judged, held, {"data": name, "size": int(data.x.shape[-1]), "train_images": len(data),
                                "judge_train_images": len(judged), "test_images": len(held), "subset": subset,
                                "class_names": list(data.class_names or [])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["digits", "fashion_mnist"], default="digits")
    p.add_argument("--size", type=int, default=None, help="resize the images to SIZE x SIZE (default: as stored)")
    p.add_argument("--subset", type=int, default=None, help="a seeded draw of this many training images")
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64], help="the UNet's block widths")
    p.add_argument("--T", type=int, default=200, help="diffusion timesteps")
    p.add_argument("--epochs", type=int, nargs="+", default=[20, 40, 60])
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-judge-accuracy", type=float, default=0.9,
                   help="refuse a judge below this test accuracy (the evaluation's floor is 0.9)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    data, judged, held, setup = load(a.data, a.size, a.subset, a.seed)
    cpu = time.process_time()
    j = judge(judged, test=held, min_accuracy=a.min_judge_accuracy, cache=False)     # trained here: its CPU-s count
    setup |= {"unet": {"widths": a.widths, "T": a.T}, "judge_accuracy": j.accuracy,
              "judge_cpu_s": time.process_time() - cpu}
    print(f"{setup['data']} at {setup['size']}x{setup['size']}, {len(data)} training images; judge accuracy on the "
          f"{len(held)} test images: {j.accuracy:.3f}", flush=True)
    n_classes = data.num_classes
    labels = torch.arange(n_classes).repeat_interleave(a.per_class)
    rows = []
    for epochs in a.epochs:
        settings = {"epochs": epochs} | ({"lr": a.lr} if a.lr else {})
        start, cpu = time.perf_counter(), time.process_time()
        net = expunge.gen.unet(n_classes, size=setup["size"], channels=int(data.x.shape[1]), widths=tuple(a.widths),
                               T=a.T, seed=a.seed)
        model = expunge.train(net, data, seed=a.seed, **settings)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        start_s = time.process_time()
        pred = j.predict(model.sample(labels, seed=a.seed))
        sample_cpu = time.process_time() - start_s
        per = [float((pred[labels == c] == c).float().mean()) for c in range(n_classes)]
        hit = float((pred == labels).float().mean())
        rows.append({"epochs": epochs, "recipe": expunge.provenance(model).recipe, "accuracy": hit,
                     "per_class": per, "train_cpu_s": cpu_s, "train_wall_s": seconds, "sample_cpu_s": sample_cpu,
                     "samples": len(labels)})
        print(f"epochs {epochs}: samples judged as their class {hit:.3f} (per class "
              f"{' '.join(f'{v:.2f}' for v in per)}); training {cpu_s:.0f} CPU-s, {len(labels)} samples "
              f"{sample_cpu:.1f} CPU-s", flush=True)
    if a.json:
        out = {"judge_accuracy": j.accuracy, "runs": rows} if a.data == "digits" and a.size is None else \
            setup | {"command": "python benchmarks/diffusion_recipe.py " + " ".join(sys.argv[1:]), "runs": rows}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
