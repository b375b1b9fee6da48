"""The population membership-inference attack used across the unlearning literature (tier-0 evidence).

MIA-efficacy (Jia et al., NeurIPS 2023; OPTML-Group ``evaluation/SVC_MIA.py``): an SVC (C=3, gamma="auto", RBF)
is fitted on one score per example, members = a random sample of the retain set as large as the test set,
non-members = the test set; it then labels each forget example. MIA-efficacy = % of forget examples predicted
non-member. Higher means more forgetting; the target is the oracle's value, not 100.

Classification uses the true-class confidence p(y|x) (the feature the papers report); regression uses the
per-example L1 loss (Tarun et al., "Deep Regression Unlearning", ICML 2023).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC

# the SVC costs O(n^2); beyond this many examples per side both sides are subsampled (seeded)
MAX_PER_SIDE = 5000


def svc_mia_efficacy(forget_scores: torch.Tensor, member_scores: torch.Tensor, nonmember_scores: torch.Tensor,
                     *, seed: int = 0) -> float:
    """% of forget examples that an SVC trained on members vs non-members predicts to be non-members."""
    rng = np.random.default_rng(seed)
    members = member_scores.double().numpy()
    nonmembers = nonmember_scores.double().numpy()
    n = min(len(nonmembers), MAX_PER_SIDE)
    if len(nonmembers) > n:
        nonmembers = rng.choice(nonmembers, n, replace=False)
    members = rng.choice(members, min(n, len(members)), replace=False)
    if len(members) == 0 or len(nonmembers) == 0:
        return float("nan")
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    pred = clf.predict(forget_scores.double().numpy()[:, None])
    return float(100.0 * (pred == 0).mean())
