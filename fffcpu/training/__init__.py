"""Training FFFs in NumPy: optimizers, losses, the loop, scikit-learn style estimators.

    from fffcpu.training import fit
    history = fit(layer, X, y, optimizer="adam", lr=1e-3, epochs=10, hardening=3.0)
"""
from .losses import cross_entropy, mse
from .optim import SGD, Adam, AdamW, LocalAdam, LocalSGD, make_optimizer
from .loop import History, evaluate, fit
from .estimators import FFFClassifier, FFFRegressor, NotFittedError

__all__ = ["SGD", "Adam", "AdamW", "LocalSGD", "LocalAdam", "make_optimizer", "cross_entropy", "mse",
           "fit", "evaluate", "History", "FFFClassifier", "FFFRegressor", "NotFittedError"]
