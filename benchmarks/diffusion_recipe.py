"""How well the embedded class-conditional diffusion model learns scikit-learn's digits, and how fast.

Trains ``expunge.gen.unet()`` (~0.7M parameters, 8x8, T = 200) with ``expunge.train`` on the digits training split
(``expunge.data.for_generation``) for each number of epochs given, draws ``--per-class`` DDIM samples per class
(25 steps, guidance 2) and prints the share that the judge (``expunge.gen.judge``: a classifier trained here on
the real images, its test accuracy printed too) assigns to the conditioning class, per class and overall, with the
training's CPU seconds. One process, one thread; the machine may be shared, so compare runs made together.

    python benchmarks/diffusion_recipe.py [--epochs 20 40 60] [--lr 2e-3] [--per-class 50] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import expunge  # noqa: E402
from expunge.gen.judge import judge  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[20, 40, 60])
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    train, test = expunge.data.digits()
    data, held = expunge.data.for_generation(train), expunge.data.for_generation(test)
    j = judge(data, test=held)
    print(f"judge accuracy on the test images: {j.accuracy:.3f}")
    labels = torch.arange(10).repeat_interleave(a.per_class)
    rows = []
    for epochs in a.epochs:
        settings = {"epochs": epochs} | ({"lr": a.lr} if a.lr else {})
        start, cpu = time.perf_counter(), time.process_time()
        model = expunge.train(expunge.gen.unet(seed=a.seed), data, seed=a.seed, **settings)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        start_s = time.process_time()
        pred = j.predict(model.sample(labels, seed=a.seed))
        sample_cpu = time.process_time() - start_s
        per = [float((pred[labels == c] == c).float().mean()) for c in range(10)]
        hit = float((pred == labels).float().mean())
        rows.append({"epochs": epochs, "recipe": expunge.provenance(model).recipe, "accuracy": hit,
                     "per_class": per, "train_cpu_s": cpu_s, "train_wall_s": seconds, "sample_cpu_s": sample_cpu,
                     "samples": len(labels)})
        print(f"epochs {epochs}: samples judged as their class {hit:.3f} (per class "
              f"{' '.join(f'{v:.2f}' for v in per)}); training {cpu_s:.0f} CPU-s, {len(labels)} samples "
              f"{sample_cpu:.1f} CPU-s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"judge_accuracy": j.accuracy, "runs": rows}, f, indent=2)


if __name__ == "__main__":
    main()
