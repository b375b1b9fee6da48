"""Metrics: model outputs, accuracies and errors, membership-inference attacks, gaps to the oracle, and
distributional scores against many oracles."""
from .advantage import Advantage, ScaledAdvantage, scaled_advantage, swap_advantage
from .attacks import lira, rmia, threshold_attack, tune_rmia_a
from .forgetting import ForgettingQuality, KLoMResult, example_epsilons, forgetting_quality, klom
from .mia import svc_mia_efficacy
from .outputs import per_example_loss, predict, true_class_confidence
from .roc import AttackResult, balanced_accuracy, roc_auc, roc_curve, tpr_at_fpr
from .scores import (confidence, entropy, logit_scaled_confidence, loss, margin, membership_score,
                     modified_entropy)

__all__ = ["predict", "true_class_confidence", "per_example_loss", "svc_mia_efficacy",
           "loss", "confidence", "entropy", "modified_entropy", "logit_scaled_confidence", "margin",
           "membership_score", "roc_curve", "roc_auc", "tpr_at_fpr", "balanced_accuracy", "AttackResult",
           "threshold_attack", "lira", "rmia", "tune_rmia_a",
           "forgetting_quality", "ForgettingQuality", "example_epsilons", "klom", "KLoMResult",
           "swap_advantage", "scaled_advantage", "Advantage", "ScaledAdvantage"]
