"""Exact and certified unlearning: models built so that deletion is cheap and provably equivalent (or provably
close) to retraining without the deleted data.

- :mod:`.sisa`: SISA training (sharded, isolated, sliced, aggregated ensembles), Bourtoule et al., IEEE S&P 2021;
- :mod:`.certified`: certified removal for L2-regularised logistic regression (Guo et al., ICML 2020) and exact
  removal for ridge regression.
"""
from .certified import CertifiedLogistic, RemovalState, RidgeRemoval
from .sisa import SISA, Deletion, SISAEnsemble

__all__ = ["SISA", "SISAEnsemble", "Deletion", "CertifiedLogistic", "RemovalState", "RidgeRemoval"]
