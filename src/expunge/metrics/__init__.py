"""Metrics: model outputs, accuracies and errors, membership-inference attacks, gaps to the oracle."""
from .mia import svc_mia_efficacy
from .outputs import per_example_loss, predict, true_class_confidence

__all__ = ["predict", "true_class_confidence", "per_example_loss", "svc_mia_efficacy"]
