"""expunge: make a trained PyTorch model forget chosen training data, and prove it against the oracle.

>>> import expunge
>>> train, test = expunge.data.digits()
>>> forget, retain = expunge.split_forget(train, fraction=0.1, seed=0)
>>> len(forget), len(retain)
(144, 1293)
"""
from . import threads  # first: sets MKL_CBWR before torch loads (results independent of the thread count)
from . import data, ensemble, exact, gen, lm, metrics, models, sequential, tuning, worst_case
from .api import methods, model, train, unlearn
from .audit import AuditResult, audit
from .data import ArrayDataset, as_dataset, split_forget
from .evaluate import evaluate
from .modelio import load_model, save_model
from .provenance import provenance
from .sparsity import sparsify
from .training import DivergenceError, Recipe
from .deletion.stream import stream

__version__ = "0.1.0"

__all__ = ["split_forget", "train", "unlearn", "evaluate", "audit", "methods", "model", "save_model", "load_model",
           "ArrayDataset", "as_dataset", "provenance", "sparsify", "Recipe", "DivergenceError", "AuditResult", "stream", "data", "ensemble",
           "exact", "models", "metrics", "tuning", "worst_case"]
