"""Evaluation: SRCC, PLCC, accuracy, SRCC/accuracy ratio, MAE, RMSE, EMD."""
from mlsp.evaluation.metrics import emd_numpy, evaluate_predictions

__all__ = ["emd_numpy", "evaluate_predictions"]
