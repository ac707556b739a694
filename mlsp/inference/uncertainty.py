"""Per-photo uncertainty: how sure is a prediction?

Two different quantities, for two different questions:

- ``spread`` (fold ensembles, saved by ``mlsp train --folds``): the standard deviation
  (ddof = 1) of the F fold models' scores of the photo, on the rating scale.  It measures
  *model* disagreement: how much the score depends on which 1 - 1/F of the training
  images the model saw (a deep-ensemble / jackknife style estimate of the model part of
  the error, Lakshminarayanan et al. 2017).  It is not how much raters disagree, and it
  does not include the error all fold models share.
- ``score_std`` (distribution heads, ``--output distribution``): the standard deviation
  of the predicted rating distribution, sqrt(sum_k p_k (s_k - mean)^2) over the bin
  scores s_k, on the rating scale: the *predicted rater disagreement* (NIMA's standard
  deviation of scores; the labels' ``mos_std`` is its truth).  A photo raters disagree
  on is not necessarily one the model scores badly.

``benchmarks/bench_uncertainty.py`` measures on OASIS whether either goes with a larger
absolute error.  The prediction itself is unchanged: an ensemble's score is the mean of
its fold models' scores (the same as the saved model's average layer, since the
expectation over bins is linear).
"""
from __future__ import annotations

import numpy as np

__all__ = ["fold_outputs_model", "ensemble_scores", "score_std", "uncertainty_columns"]


def fold_outputs_model(model, sidecar: dict):
    """A Keras model giving every fold model's output side by side, (N, F * K) (MOS heads:
    already on the rating scale), sharing the ensemble's weights; None when ``model`` is
    not a fold ensemble (:func:`mlsp.training.crossval.ensemble_models`)."""
    folds = int((sidecar.get("ensemble") or {}).get("folds") or 0)
    if folds < 2:
        return None
    import keras

    inp = keras.Input(model.input_shape[1:], dtype="float32", name="features")
    outs = []
    for j in range(folds):
        y = model.get_layer(f"fold{j}")(inp)
        if sidecar["output"] == "mos":
            y = model.get_layer(f"fold{j}_to_scale")(y)
        outs.append(y)
    return keras.Model(inp, keras.layers.Concatenate(name="folds")(outs),
                       name="fold_outputs")


def score_std(dist, bin_scores) -> np.ndarray:
    """Standard deviation of each predicted distribution on the score scale."""
    p = np.asarray(dist, np.float64)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-12, None)
    s = np.asarray(bin_scores, np.float64)
    mean = p @ s
    return np.sqrt(np.clip(p @ (s ** 2) - mean ** 2, 0.0, None))


def ensemble_scores(raw, sidecar: dict):
    """Fold outputs ``(N, F * K)`` -> (score, distribution or None, fold scores (N, F)):
    the score is the mean of the fold scores, the distribution the mean of the folds'."""
    from ..evaluation.metrics import distribution_mean

    folds = int(sidecar["ensemble"]["folds"])
    raw = np.asarray(raw, np.float64).reshape(len(raw), folds, -1)
    if sidecar["output"] == "mos":
        per_fold = raw[..., 0]
        return per_fold.mean(axis=1), None, per_fold
    bins = sidecar["bin_scores"]
    per_fold = np.stack([distribution_mean(raw[:, j], bins)[0] for j in range(folds)], 1)
    dist = distribution_mean(raw.mean(axis=1), bins)[1]
    return per_fold.mean(axis=1), dist, per_fold


def uncertainty_columns(fold_scores, dist, sidecar: dict) -> dict:
    """``{"spread": (N,), "score_std": (N,)}``, each present only when defined."""
    out = {}
    if fold_scores is not None and np.shape(fold_scores)[1] > 1:
        out["spread"] = np.std(np.asarray(fold_scores, np.float64), axis=1, ddof=1)
    if dist is not None and sidecar.get("bin_scores") is not None:
        out["score_std"] = score_std(dist, sidecar["bin_scores"])
    return out
