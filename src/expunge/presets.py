"""Per-method arguments for scikit-learn's digits, used by ``expunge demo``.

Paper defaults are set for CIFAR-scale data and often do nothing on 1,437 small images. These arguments are the
ones the digits benchmark chose by tuning each method against the oracle (Optuna, the same trial budget for every
method): for random forgetting, tuned on another random 10% of the training set; for class-wise forgetting, tuned on
another class than the one forgotten. Written by ``python benchmarks/presets_from_digits.py`` from
``benchmarks/results/digits.json`` (``expunge bench benchmarks/digits.yaml``); do not edit by hand.
"""
from __future__ import annotations

from typing import Any

DIGITS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    'cnn': {
        'class': {
            'bad_teacher': {'epochs': 5, 'lr': 0.001, 'retain_fraction': 0.3},
            'boundary_expand': {'epochs': 10, 'lr': 0.005},
            'boundary_shrink': {'attack': 'pgd', 'bound': 0.1, 'epochs': 10, 'lr': 0.001},
            'ct': {'epochs': 10, 'lr': 0.05},
            'finetune': {'epochs': 10, 'lr': 0.05},
            'fisher': {'alpha': 1e-08, 'fisher': 'empirical'},
            'gradient_ascent': {'epochs': 5, 'lr': 0.001},
            'influence': {'alpha': 3.0, 'damping': 1.0, 'max_samples': 512},
            'l1_sparse': {'alpha': 0.0001, 'epochs': 10, 'lr': 0.05},
            'laf': {'epochs': 20, 'extract_weight': 0.5, 'latent_dim': 16, 'lr': 0.0003, 'temperature': 5.0},
            'msg': {'epochs': 10, 'grad_scale': 0.1, 'init_rate': 0.5, 'lr': 0.01},
            'neggrad_plus': {'alpha': 0.99, 'epochs': 10, 'lr': 0.01},
            'random_label': {'epochs': 5, 'lr': 0.001},
            'salun': {'epochs': 5, 'lr': 0.005, 'ratio': 0.5},
            'scrub': {'alpha': 0.1, 'epochs': 10, 'lr': 0.001, 'msteps': 2},
            'ssd': {'alpha': 50.0, 'lam': 0.5},
        },
        'random': {
            'bad_teacher': {'epochs': 3, 'lr': 0.0005, 'retain_fraction': 0.3},
            'boundary_expand': {'epochs': 10, 'lr': 0.0001},
            'boundary_shrink': {'attack': 'pgd', 'bound': 0.03, 'epochs': 10, 'lr': 0.0001},
            'ct': {'epochs': 10, 'lr': 0.05},
            'finetune': {'epochs': 5, 'lr': 0.05},
            'fisher': {'alpha': 1e-07, 'fisher': 'true'},
            'gradient_ascent': {'epochs': 3, 'lr': 0.01},
            'influence': {'alpha': 0.1, 'damping': 1.0, 'max_samples': 512},
            'l1_sparse': {'alpha': 0.0001, 'epochs': 10, 'lr': 0.05},
            'laf': {'epochs': 60, 'extract_weight': 1.0, 'latent_dim': 16, 'lr': 0.001, 'temperature': 20.0},
            'msg': {'epochs': 3, 'grad_scale': 0.3, 'init_rate': 0.1, 'lr': 0.05},
            'neggrad_plus': {'alpha': 0.95, 'epochs': 10, 'lr': 0.01},
            'random_label': {'epochs': 5, 'lr': 0.001},
            'salun': {'epochs': 5, 'lr': 0.005, 'ratio': 0.5},
            'scrub': {'alpha': 0.001, 'epochs': 3, 'lr': 0.0005, 'msteps': 3},
            'ssd': {'alpha': 50.0, 'lam': 0.5},
        },
    },
    'mlp': {
        'class': {
            'bad_teacher': {'epochs': 5, 'lr': 0.001, 'retain_fraction': 0.3},
            'boundary_expand': {'epochs': 5, 'lr': 0.001},
            'boundary_shrink': {'attack': 'pgd', 'bound': 0.1, 'epochs': 10, 'lr': 0.001},
            'finetune': {'epochs': 10, 'lr': 0.1},
            'fisher': {'alpha': 1e-07, 'fisher': 'true'},
            'gradient_ascent': {'epochs': 3, 'lr': 0.01},
            'influence': {'alpha': 1.0, 'damping': 0.01, 'max_samples': 512},
            'l1_sparse': {'alpha': 0.0001, 'epochs': 10, 'lr': 0.05},
            'laf': {'epochs': 60, 'extract_weight': 0.5, 'latent_dim': 8, 'lr': 0.001, 'temperature': 20.0},
            'msg': {'epochs': 10, 'grad_scale': 0.1, 'init_rate': 0.5, 'lr': 0.01},
            'neggrad_plus': {'alpha': 0.99, 'epochs': 5, 'lr': 0.05},
            'random_label': {'epochs': 10, 'lr': 0.01},
            'salun': {'epochs': 10, 'lr': 0.013, 'ratio': 0.5},
            'scrub': {'alpha': 0.1, 'epochs': 3, 'lr': 0.005, 'msteps': 2},
            'ssd': {'alpha': 50.0, 'lam': 0.5},
        },
        'random': {
            'bad_teacher': {'epochs': 5, 'lr': 0.0005, 'retain_fraction': 0.1},
            'boundary_expand': {'epochs': 10, 'lr': 0.0001},
            'boundary_shrink': {'attack': 'pgd', 'bound': 0.1, 'epochs': 10, 'lr': 0.0001},
            'finetune': {'epochs': 10, 'lr': 0.05},
            'fisher': {'alpha': 1e-06, 'fisher': 'true'},
            'gradient_ascent': {'epochs': 1, 'lr': 0.1},
            'influence': {'alpha': 10.0, 'damping': 1.0, 'max_samples': 512},
            'l1_sparse': {'alpha': 1e-05, 'epochs': 10, 'lr': 0.05},
            'laf': {'epochs': 60, 'extract_weight': 1.0, 'latent_dim': 16, 'lr': 0.003, 'temperature': 20.0},
            'msg': {'epochs': 10, 'grad_scale': 0.1, 'init_rate': 0.3, 'lr': 0.01},
            'neggrad_plus': {'alpha': 0.99, 'epochs': 5, 'lr': 0.05},
            'random_label': {'epochs': 5, 'lr': 0.001},
            'salun': {'epochs': 5, 'lr': 0.05, 'ratio': 0.1},
            'scrub': {'alpha': 0.01, 'epochs': 10, 'lr': 0.01, 'msteps': 3},
            'ssd': {'alpha': 20.0, 'lam': 0.1},
        },
    },
}


def digits_args(model: str, scenario: str, method: str) -> dict[str, Any]:
    """The arguments for ``method`` on digits with ``model`` ("mlp" or "cnn") and ``scenario`` ("random" or
    "class"); empty (the method's defaults) when the benchmark has none."""
    return dict(DIGITS.get(model, {}).get(scenario, {}).get(method, {}))
