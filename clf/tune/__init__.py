"""Hyperparameter search with Optuna: `clf tune`."""
